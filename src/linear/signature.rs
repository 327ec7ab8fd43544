//! `Linear-Signature` (hex HMAC-SHA256 of the raw body) and the freshness of
//! `webhookTimestamp`, both checked before the payload is acted on.

use secrecy::SecretString;

use crate::signing::{hmac_hex, signed_by_any, unhex};

/// How far `webhookTimestamp` may be from now: older deliveries are replays.
pub const MAX_SKEW_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Linear-Signature header")]
    Missing,
    #[error("Linear-Signature is not 64 hex digits")]
    Malformed,
    #[error("Linear-Signature does not match the body for any configured LINEAR_WEBHOOK_SECRET")]
    Mismatch,
    #[error("webhookTimestamp is missing or not a number of milliseconds")]
    NoTimestamp,
    #[error("webhookTimestamp is more than 60 seconds from now: a stale or replayed delivery")]
    Stale,
}

pub fn verify(
    secrets: &[SecretString],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let expected = unhex(header)
        .filter(|b| b.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    if signed_by_any(secrets, body, &expected) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The payload's `webhookTimestamp` (ms since the epoch) is within a minute of `now_ms`.
pub fn fresh(payload: &serde_json::Value, now_ms: i64) -> Result<(), SignatureError> {
    let sent = payload["webhookTimestamp"]
        .as_i64()
        .ok_or(SignatureError::NoTimestamp)?;
    if (now_ms - sent).abs() > MAX_SKEW_MS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The header value Linear would send for `body` signed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_by_any_secret_and_nothing_else() {
        let secrets = vec![SecretString::from("old"), SecretString::from("new")];
        let body = br#"{"action":"create","webhookTimestamp":1}"#;
        assert_eq!(verify(&secrets, body, Some(&sign("new", body))), Ok(()));
        assert_eq!(verify(&secrets, body, Some(&sign("old", body))), Ok(()));
        assert_eq!(
            verify(&secrets, body, Some(&sign("other", body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secrets, b"{}", Some(&sign("new", body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&secrets, body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(&secrets, body, Some("sha256=ab")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn only_fresh_deliveries() {
        let now = 1_700_000_000_000;
        assert_eq!(
            fresh(&json!({"webhookTimestamp": now - 5_000}), now),
            Ok(())
        );
        assert_eq!(
            fresh(&json!({"webhookTimestamp": now - 61_000}), now),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            fresh(&json!({"webhookTimestamp": now + 61_000}), now),
            Err(SignatureError::Stale)
        );
        assert_eq!(fresh(&json!({}), now), Err(SignatureError::NoTimestamp));
        assert_eq!(
            fresh(&json!({"webhookTimestamp": "soon"}), now),
            Err(SignatureError::NoTimestamp)
        );
    }
}
