//! The App's own JSON Web Token: what it presents to mint installation tokens.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Backdated a minute for clock drift between us and GitHub, and valid for nine in all
/// (eight from now): GitHub refuses tokens that live ten minutes or more.
pub fn claims(app_id: u64, now: i64) -> Claims {
    Claims {
        iat: now - 60,
        exp: now + 8 * 60,
        iss: app_id.to_string(),
    }
}

pub fn app_jwt(
    app_id: u64,
    key: &EncodingKey,
    now: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(app_id, now), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stay_inside_githubs_window() {
        let c = claims(42, 1_700_000_000);
        assert_eq!(c.iss, "42");
        assert_eq!(c.iat, 1_700_000_000 - 60);
        assert!(
            c.exp - c.iat < 10 * 60,
            "GitHub refuses ten minutes or more"
        );
        assert!(c.exp > 1_700_000_000 + 5 * 60);
    }
}
