//! A bounded cache of verified access tokens.
//!
//! An EdDSA or ECDSA verification costs tens of microseconds, several times
//! the cost of the HTTP request itself; a client sends the same token on every
//! request until it expires. So a token whose signature verified is
//! remembered, keyed by its SHA-256, with its claims and kid. A hit still
//! re-checks the time claims and that the kid is in the current ring, and the
//! session (revocation) is checked on every request regardless, so the cache
//! never lets a revoked or expired token through.

use std::collections::HashMap;
use std::sync::Mutex;

use tessera_core::SecretHash;
use tessera_core::jwt::Verified;

/// Entries kept at most; past that, expired ones go, and if that is not
/// enough, everything (a burst of distinct tokens must not grow memory).
const CAPACITY: usize = 10_000;

/// Verified tokens by hash.
#[derive(Default)]
pub struct VerifiedCache {
    map: Mutex<HashMap<[u8; 32], Verified>>,
}

impl VerifiedCache {
    /// The verified claims of `token`, if it was verified before.
    pub fn get(&self, token: &str) -> Option<Verified> {
        let key = *SecretHash::of(token).as_bytes();
        self.map.lock().ok()?.get(&key).cloned()
    }

    /// Remembers a verified token.
    pub fn insert(&self, token: &str, verified: Verified, now_unix: i64) {
        let key = *SecretHash::of(token).as_bytes();
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= CAPACITY {
            map.retain(|_, v| v.claims.exp > now_unix);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(key, verified);
    }
}
