//! The synchronizer CSRF token of a cookie session.
//!
//! The token is derived, not stored: HMAC-SHA256 keyed by the session secret
//! over a fixed label. Only someone holding the secret (which lives in an
//! `HttpOnly` cookie that no script can read) can compute it, the server can
//! recompute it on every request from the cookie it was sent, and a stolen
//! database yields neither. It is compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::SessionSecret;

const LABEL: &[u8] = b"tessera csrf token v1";

/// The CSRF token that belongs to `secret`.
pub fn token_for(secret: &SessionSecret) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret))
}

/// Whether `presented` is the CSRF token of `secret`.
pub fn verify(secret: &SessionSecret, presented: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
        return false;
    };
    bytes.ct_eq(&mac(secret)).into()
}

fn mac(secret: &SessionSecret) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(LABEL);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn token_verifies_for_its_own_secret_only() {
        let a = SessionSecret::generate(&mut OsRng);
        let b = SessionSecret::generate(&mut OsRng);
        let token = token_for(&a);
        assert!(verify(&a, &token));
        assert!(!verify(&b, &token));
        assert!(!verify(&a, ""));
        assert!(!verify(&a, "not base64 !"));
        assert!(!verify(&a, &token[..token.len() - 1]));
    }

    #[test]
    fn token_is_stable_per_secret() {
        let a = SessionSecret::generate(&mut OsRng);
        assert_eq!(token_for(&a), token_for(&a));
    }
}
