//! HMAC-SHA256 webhook signatures and hex, shared by every source that signs its deliveries
//! (GitHub, Linear). Comparisons are constant-time.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Lower-case hex, for digests and signatures.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The HMAC-SHA256 of `body` with `secret`, in hex.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Whether `signature` (raw bytes) is the HMAC-SHA256 of `body` under any of `secrets`
/// (several while one is being rotated).
pub fn signed_by_any(secrets: &[SecretString], body: &[u8], signature: &[u8]) -> bool {
    secrets.iter().any(|secret| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(unhex("000fff"), Some(vec![0, 15, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        let sig = unhex(&hmac_hex("k", b"body")).unwrap();
        assert!(signed_by_any(
            &[SecretString::from("x"), SecretString::from("k")],
            b"body",
            &sig
        ));
        assert!(!signed_by_any(&[SecretString::from("x")], b"body", &sig));
    }
}
