//! The server's public keys, fetched from its JWKS and cached.
//!
//! The key set is kept for the `max-age` of the answer's `Cache-Control`.
//! Any other fetch (a `kid` the set does not have, or a retry after a failed
//! fetch) happens only if the last fetch started at least `interval` ago;
//! fetches are one at a time, and a request that waited for one uses its
//! result instead of starting another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

/// The longest a key set is kept, whatever `max-age` says.
const MAX_AGE_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// One verification key and the algorithm its JWK pins.
pub(crate) struct Key {
    pub(crate) alg: Algorithm,
    pub(crate) decoding: DecodingKey,
}

/// Why no key was found.
pub(crate) enum Missing {
    /// The server's current key set has no such `kid` (or it is not a
    /// signing key tessera would use).
    UnknownKid,
    /// The key set could not be fetched.
    Unavailable,
}

struct KeySet {
    keys: HashMap<String, Arc<Key>>,
    fresh_until: Instant,
}

struct Gate {
    last_attempt: Option<Instant>,
    last_failed: bool,
}

pub(crate) struct KeyCache {
    url: String,
    interval: Duration,
    set: RwLock<Option<Arc<KeySet>>>,
    gate: tokio::sync::Mutex<Gate>,
    fetches: AtomicU64,
}

impl KeyCache {
    pub(crate) fn new(url: String, interval: Duration) -> Self {
        Self {
            url,
            interval,
            set: RwLock::new(None),
            gate: tokio::sync::Mutex::new(Gate {
                last_attempt: None,
                last_failed: false,
            }),
            fetches: AtomicU64::new(0),
        }
    }

    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        match self.set.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, set: Arc<KeySet>) {
        match self.set.write() {
            Ok(mut guard) => *guard = Some(set),
            Err(poisoned) => *poisoned.into_inner() = Some(set),
        }
    }

    /// The key `kid`, fetching the key set when it is missing, stale, or
    /// lacks `kid`, within the limits above.
    pub(crate) async fn key(
        &self,
        client: &reqwest::Client,
        kid: &str,
    ) -> Result<Arc<Key>, Missing> {
        let fresh_hit = |set: &Option<Arc<KeySet>>, now: Instant| {
            set.as_ref()
                .filter(|s| now < s.fresh_until)
                .and_then(|s| s.keys.get(kid).cloned())
        };
        if let Some(key) = fresh_hit(&self.current(), Instant::now()) {
            return Ok(key);
        }
        let mut gate = self.gate.lock().await;
        // Another request may have fetched while this one waited.
        let now = Instant::now();
        let set = self.current();
        if let Some(key) = fresh_hit(&set, now) {
            return Ok(key);
        }
        if gate
            .last_attempt
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            // Too soon for another fetch: answer from what is known.
            return match set {
                _ if gate.last_failed => Err(Missing::Unavailable),
                Some(s) => s.keys.get(kid).cloned().ok_or(Missing::UnknownKid),
                None => Err(Missing::Unavailable),
            };
        }
        gate.last_attempt = Some(now);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch(client).await {
            Ok(set) => {
                gate.last_failed = false;
                let key = set.keys.get(kid).cloned();
                self.store(Arc::new(set));
                key.ok_or(Missing::UnknownKid)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "fetching tessera's JWKS failed");
                gate.last_failed = true;
                Err(Missing::Unavailable)
            }
        }
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<KeySet, String> {
        let res = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if res.status() != reqwest::StatusCode::OK {
            return Err(format!("status {}", res.status()));
        }
        let max_age = res
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map_or(self.interval, max_age)
            .min(MAX_AGE_CAP);
        let set: JwkSet = res.json().await.map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
            {
                continue;
            }
            // The algorithm is pinned by the JWK; one without `alg`, or with
            // a symmetric one, is not a key tessera publishes.
            let Some(alg) = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok())
            else {
                continue;
            };
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            keys.insert(kid, Arc::new(Key { alg, decoding }));
        }
        Ok(KeySet {
            keys,
            fresh_until: Instant::now() + max_age,
        })
    }
}

/// The `max-age` of a `Cache-Control` value. `no-store`, `no-cache`, or no
/// `max-age` is zero: the set is refetched on the next miss, still no more
/// than once per interval. (Without the header at all, the interval.)
fn max_age(cache_control: &str) -> Duration {
    let mut age = Duration::ZERO;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(v) = lower.strip_prefix("max-age=")
            && let Ok(secs) = v.trim_matches('"').parse::<u64>()
        {
            age = Duration::from_secs(secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_reads_the_directive() {
        assert_eq!(max_age("public, max-age=60"), Duration::from_secs(60));
        assert_eq!(max_age("max-age=\"5\""), Duration::from_secs(5));
        assert_eq!(max_age("no-store"), Duration::ZERO);
        assert_eq!(max_age("public, max-age=60, no-cache"), Duration::ZERO);
        assert_eq!(max_age("public"), Duration::ZERO);
    }
}
