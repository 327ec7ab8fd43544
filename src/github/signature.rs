//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body, checked before anything parses it.

use secrecy::SecretString;

use crate::signing::{hmac_hex, signed_by_any, unhex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body for any configured GITHUB_WEBHOOK_SECRET")]
    Mismatch,
}

/// Accepts the body if any configured secret signed it (several during a rotation).
pub fn verify(
    secrets: &[SecretString],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let expected = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(unhex)
        .filter(|b| b.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    if signed_by_any(secrets, body, &expected) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, body))
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
