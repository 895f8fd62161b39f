//! Session secrets: the bearer credential a browser holds in its cookie.
//!
//! A secret is `tsr_ss_` followed by 256 bits from the caller's CSPRNG in
//! base64url (43 characters), so secret scanners and log filters can spot one.
//! The server keeps only its SHA-256 ([`SecretHash`]): a copy of the database
//! yields no live credential. A presented secret is looked up by its hash, so
//! no comparison of secret bytes happens in Rust at all; where two hashes must
//! be compared, [`SecretHash`]'s equality is constant-time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Rng;

/// The prefix of every session secret.
pub const SESSION_SECRET_PREFIX: &str = "tsr_ss_";

/// Number of random bytes in a secret (256 bits).
const SECRET_BYTES: usize = 32;
/// base64url length of [`SECRET_BYTES`] without padding.
const SECRET_CHARS: usize = 43;
/// Longest body accepted when parsing; anything longer is junk, not a secret.
const MAX_SECRET_CHARS: usize = 128;

/// A session secret in clear. Exists only between creation and the response,
/// or between reading the cookie and hashing it. `Debug` redacts it.
#[derive(Clone)]
pub struct SessionSecret(String);

impl SessionSecret {
    /// A fresh secret from `rng`.
    pub fn generate(rng: &mut dyn Rng) -> Self {
        Self(random_token(SESSION_SECRET_PREFIX, rng))
    }

    /// Accepts a presented secret if it has the right prefix and alphabet.
    /// Returns `None` for anything else, so junk never reaches the store.
    pub fn parse(raw: &str) -> Option<Self> {
        is_token(SESSION_SECRET_PREFIX, raw).then(|| Self(raw.to_owned()))
    }

    /// The secret in clear, for the `Set-Cookie` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 under which the secret is stored.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// `prefix` followed by 256 random bits in base64url.
pub fn random_token(prefix: &str, rng: &mut dyn Rng) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut bytes);
    let mut out = String::with_capacity(prefix.len() + SECRET_CHARS);
    out.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
    out
}

/// Whether `raw` is `prefix` followed by 43 to 128 base64url characters.
pub fn is_token(prefix: &str, raw: &str) -> bool {
    let Some(body) = raw.strip_prefix(prefix) else {
        return false;
    };
    (SECRET_CHARS..=MAX_SECRET_CHARS).contains(&body.len())
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of a secret: what the stores keep and index.
#[derive(Clone, Copy)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a secret.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Rebuilds a hash read back from a store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes, for a store to write.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for SecretHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretHash {}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn generated_secret_has_the_documented_format() {
        let s = SessionSecret::generate(&mut OsRng);
        let raw = s.expose();
        assert!(raw.starts_with("tsr_ss_"));
        assert_eq!(raw.len(), 7 + 43);
        assert!(SessionSecret::parse(raw).is_some());
    }

    #[test]
    fn secrets_differ_and_hash_stably() {
        let a = SessionSecret::generate(&mut OsRng);
        let b = SessionSecret::generate(&mut OsRng);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.hash(), SecretHash::of(a.expose()));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn parse_refuses_junk() {
        let good = SessionSecret::generate(&mut OsRng);
        let body = &good.expose()[7..];
        for bad in [
            String::new(),
            body.to_owned(),
            format!("tsr_rt_{body}"),
            format!("tsr_ss_{}", &body[..42]),
            format!("tsr_ss_{}!", &body[..42]),
            format!("tsr_ss_{}", "a".repeat(129)),
            format!("tsr_ss_{body} "),
        ] {
            assert!(SessionSecret::parse(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SessionSecret::generate(&mut OsRng);
        assert!(!format!("{s:?}").contains(&s.expose()[7..]));
    }
}
