//! A JSON body extractor whose every failure is a JSON error naming the problem:
//! 413 past `MAUR_MAX_BODY`, 400 for malformed JSON or a field of the wrong type (with the
//! field's path).

use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = AppState::from_ref(state).config.max_body;
        // Like GitHub's API, parse JSON whatever the Content-Type says (`curl -d` sends a form
        // type), and mention a non-JSON type only when the body does not parse.
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|ct| ct != "application/json" && !ct.ends_with("+json"));
        let bytes = read_limited(req, limit).await?;
        parse(&bytes).map(JsonBody).map_err(|e| match content_type {
            Some(ct) if e.status == StatusCode::BAD_REQUEST => e.with(
                "hint",
                format!("the body must be JSON; Content-Type was {ct:?}, send application/json"),
            ),
            _ => e,
        })
    }
}

/// The raw body (webhook signatures are over the exact bytes), within `MAUR_MAX_BODY`.
pub struct RawBody(pub axum::body::Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = AppState::from_ref(state).config.max_body;
        read_limited(req, limit).await.map(RawBody)
    }
}

/// 413 as soon as the declared or actual length passes `limit`, without reading further.
async fn read_limited(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the {limit}-byte limit (MAUR_MAX_BODY)"),
        )
        .with("limit", limit)
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            if is_length_limit(&e) {
                too_large()
            } else {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        })?;
    Ok(bytes)
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Pure: bytes to `T`, or the 400 that explains why not.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; expected a JSON object",
        ));
    }
    // Every body maur accepts is an object; serde would otherwise take `[...]` for a struct.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let what = serde_json::from_slice::<serde_json::Value>(bytes)
            .map(|v| match v {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            })
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        return Err(ApiError::bad_request(format!(
            "invalid type: expected a JSON object, got {what}"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("malformed JSON: {inner}"));
        }
        let field = if path != "." {
            Some(path)
        } else {
            named_field(&inner.to_string())
        };
        let message = strip_position(&inner.to_string());
        match field {
            Some(f) if !message.contains(&format!("`{f}`")) => {
                ApiError::bad_request(format!("{f}: {message}")).with("field", f)
            }
            Some(f) => ApiError::bad_request(message).with("field", f),
            None => ApiError::bad_request(message),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// serde names the field in "missing field `x`" and "unknown field `x`" messages.
fn named_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_owned)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        prompt: String,
        n: Option<u32>,
    }

    fn err(body: &str) -> (StatusCode, String) {
        let e = parse::<Body>(body.as_bytes()).unwrap_err();
        let json = serde_json::Value::Object(e.body().clone()).to_string();
        (e.status, json)
    }

    #[test]
    fn explains_each_failure() {
        let (s, j) = err("");
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(j.contains("empty"), "{j}");
        let (_, j) = err("{\"prompt\": ");
        assert!(j.contains("malformed JSON"), "{j}");
        let (_, j) = err("{\"prompt\": 1}");
        assert!(j.contains("\"field\":\"prompt\""), "{j}");
        assert!(j.contains("invalid type"), "{j}");
        let (_, j) = err("{}");
        assert!(j.contains("missing field `prompt`"), "{j}");
        assert!(j.contains("\"field\":\"prompt\""), "{j}");
        let (_, j) = err("{\"prompt\": \"x\", \"bogus\": 1}");
        assert!(j.contains("\"field\":\"bogus\""), "{j}");
        let (_, j) = err("{\"prompt\": \"x\", \"n\": -1}");
        assert!(j.contains("\"field\":\"n\""), "{j}");
        let (_, j) = err("{\"prompt\": \"x\"} trailing");
        assert!(j.contains("malformed JSON"), "{j}");
        let (_, j) = err("[1]");
        assert!(j.contains("invalid type"), "{j}");
    }
}
