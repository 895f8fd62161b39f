//! A bounded cache of verified access tokens.
//!
//! An EdDSA or ECDSA verification costs tens of microseconds, several times
//! the cost of the HTTP request itself; a client sends the same token on every
//! request until it expires. So a token whose signature verified is
//! remembered, keyed by its SHA-256, with its claims and kid. A hit still
//! re-checks the time claims and that the kid is in the current ring, and the
//! session (revocation) is checked on every request regardless, so the cache
//! never lets a revoked or expired token through.
//!
//! The bound and the eviction are `quick_cache`'s (S3-FIFO): a burst of
//! distinct tokens, each seen once, passes through without pushing out the
//! tokens that clients keep sending.

use quick_cache::sync::Cache;
use tessera_core::SecretHash;
use tessera_core::jwt::Verified;

/// Entries kept at most: as many as the session cache keeps sessions, so
/// that every session's token can stay verified. (At 10 000, a client
/// cycling through 10 000 live tokens missed on nearly every request.)
const CAPACITY: usize = crate::auth_cache::CAPACITY;

/// Verified tokens by hash.
pub struct VerifiedCache {
    cache: Cache<[u8; 32], Verified>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self {
            cache: Cache::new(CAPACITY),
        }
    }
}

impl VerifiedCache {
    /// The verified claims of `token`, if it was verified before.
    pub fn get(&self, token: &str) -> Option<Verified> {
        self.cache.get(SecretHash::of(token).as_bytes())
    }

    /// Remembers a verified token.
    pub fn insert(&self, token: &str, verified: Verified) {
        self.cache
            .insert(*SecretHash::of(token).as_bytes(), verified);
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::jwt::AccessClaims;

    fn verified(jti: &str) -> Verified {
        Verified {
            claims: AccessClaims {
                iss: "i".into(),
                sub: "usr_1".into(),
                aud: "a".into(),
                iat: 0,
                nbf: 0,
                exp: i64::MAX,
                jti: jti.into(),
                sid: "ses_1".into(),
                username: "u".into(),
                client_id: "tessera".into(),
            },
            kid: "k".into(),
        }
    }

    #[test]
    fn a_burst_of_distinct_tokens_stays_bounded_and_keeps_the_busy_ones() {
        let cache = VerifiedCache::default();
        cache.insert("busy", verified("busy"));
        for i in 0..5 * CAPACITY {
            // The busy token is sent all along, as a client does.
            if i % 100 == 0 {
                assert!(cache.get("busy").is_some(), "evicted after {i} others");
            }
            cache.insert(&format!("burst {i}"), verified("burst"));
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        assert_eq!(cache.get("busy").unwrap().claims.jti, "busy");
        assert!(cache.get("never inserted").is_none());
    }
}
