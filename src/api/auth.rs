//! Bearer-token authentication for the REST API and the exception webhook.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// The accepted tokens, kept only as SHA-256 digests: comparing digests in constant time
/// leaks neither the tokens' contents nor their lengths, and several tokens allow rotation.
pub struct TokenSet {
    digests: Vec<[u8; 32]>,
}

impl TokenSet {
    pub fn new(tokens: &[SecretString]) -> Self {
        Self {
            digests: tokens.iter().map(|t| digest(t.expose_secret())).collect(),
        }
    }

    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        // Check every token, so timing does not reveal which one matched.
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&presented))
            .into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token from `Authorization: Bearer <token>`, or why there is none.
pub fn bearer(headers: &HeaderMap) -> Result<&str, &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("missing Authorization header; send `Authorization: Bearer <token>`")?
        .to_str()
        .map_err(|_| "Authorization header is not valid text")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("Authorization header must be `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("Authorization header must be `Bearer <token>`");
    }
    Ok(token.trim())
}

pub async fn require_bearer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
        Ok(token) if state.tokens.accepts(token) => next.run(req).await,
        Ok(_) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token").into_response(),
        Err(why) => ApiError::new(StatusCode::UNAUTHORIZED, why).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_configured_token_and_nothing_else() {
        let set = TokenSet::new(&[
            SecretString::from("old-token-0123456789"),
            SecretString::from("new-token-0123456789"),
        ]);
        assert!(set.accepts("old-token-0123456789"));
        assert!(set.accepts("new-token-0123456789"));
        assert!(!set.accepts("new-token-012345678"));
        assert!(!set.accepts(""));
    }

    #[test]
    fn parses_the_header() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Ok("abc"));
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Ok("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(bearer(&h).is_err());
    }
}
