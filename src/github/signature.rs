//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body, checked before anything parses it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body for any configured GITHUB_WEBHOOK_SECRET")]
    Mismatch,
}

/// Accepts the body if any configured secret signed it (several during a rotation). The
/// comparison is constant-time (`Mac::verify_slice`).
pub fn verify(
    secrets: &[SecretString],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = decode_hex(hex).ok_or(SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let ok = secrets.iter().any(|secret| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", crate::hex(&mac.finalize().into_bytes()))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter().map(|s| SecretString::from(*s)).collect()
    }

    #[test]
    fn githubs_documented_example_verifies() {
        // From GitHub's "Validating webhook deliveries" page.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign("It's a Secret to Everybody", b"Hello, World!"), header);
        assert_eq!(
            verify(
                &secrets(&["It's a Secret to Everybody"]),
                b"Hello, World!",
                Some(header)
            ),
            Ok(())
        );
    }

    #[test]
    fn any_rotating_secret_works_and_nothing_else_does() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let both = secrets(&["old-secret", "new-secret"]);
        assert_eq!(verify(&both, body, Some(&sign("new-secret", body))), Ok(()));
        assert_eq!(verify(&both, body, Some(&sign("old-secret", body))), Ok(()));
        assert_eq!(
            verify(&both, body, Some(&sign("other", body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&both, b"{}", Some(&sign("new-secret", body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&both, body, None), Err(SignatureError::Missing));
        for bad in [
            "sha1=abcd",
            "sha256=zz",
            "sha256=abc",
            "sha256=",
            "",
            "sha256=ab",
        ] {
            assert_eq!(
                verify(&both, body, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&[], body, Some(&sign("new-secret", body))),
            Err(SignatureError::Mismatch)
        );
    }
}
