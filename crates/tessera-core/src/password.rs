//! Password hashing: argon2id in PHC strings.
//!
//! The default parameters are OWASP's (19 MiB, 2 passes, 1 lane). The PHC
//! string carries its own parameters, so they can be raised later: a login
//! whose stored hash used other parameters reports `rehash: true`, and the
//! server stores a new hash made with the current ones.
//!
//! Hashing is CPU- and memory-heavy on purpose (about 20 ms and 19 MiB each);
//! this module is synchronous, and the server runs it off the async runtime
//! with a bounded number of hashes at once.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{Password, Rng};

/// The cost of a password hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl HashCost {
    /// OWASP's recommended minimum for argon2id.
    pub const OWASP: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
}

impl Default for HashCost {
    fn default() -> Self {
        Self::OWASP
    }
}

/// A password hashing failure. Only a broken parameter set or an internal
/// argon2 error can cause one; wrong passwords are [`Verdict::Invalid`].
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl HashError {
    /// A failure around the hashing itself (a task that died, say).
    pub fn internal(what: &str) -> Self {
        Self(what.to_owned())
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches. `rehash` asks for a new hash with current parameters.
    Valid {
        /// The stored hash used other parameters or another algorithm.
        rehash: bool,
    },
    /// The password does not match, or the stored hash is unreadable.
    Invalid,
}

/// Hashes and verifies passwords with one set of parameters.
#[derive(Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
    params: Params,
}

impl Hasher {
    /// A hasher with the given cost.
    pub fn new(cost: HashCost) -> Result<Self, HashError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| HashError(e.to_string()))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
            params,
        })
    }

    /// The PHC string of `password` with a fresh random salt.
    pub fn hash(&self, password: &Password, rng: &mut dyn Rng) -> Result<String, HashError> {
        let salt = SaltString::generate(rng);
        self.argon2
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }

    /// Checks `password` against the PHC string `stored`, in constant time
    /// with respect to the password (argon2's own comparison).
    pub fn verify(&self, stored: &str, password: &str) -> Verdict {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Verdict::Invalid;
        };
        if self
            .argon2
            .verify_password(password.as_bytes(), &parsed)
            .is_err()
        {
            return Verdict::Invalid;
        }
        let same_params = parsed.algorithm == Algorithm::Argon2id.ident()
            && Params::try_from(&parsed).is_ok_and(|p| {
                p.m_cost() == self.params.m_cost()
                    && p.t_cost() == self.params.t_cost()
                    && p.p_cost() == self.params.p_cost()
            });
        Verdict::Valid {
            rehash: !same_params,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn cheap() -> Hasher {
        Hasher::new(HashCost {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn hash_then_verify() {
        let h = cheap();
        let pw = Password::parse("correct horse battery").unwrap();
        let phc = h.hash(&pw, &mut OsRng).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(!phc.contains("correct"));
        assert_eq!(
            h.verify(&phc, "correct horse battery"),
            Verdict::Valid { rehash: false }
        );
        assert_eq!(h.verify(&phc, "correct horse batterY"), Verdict::Invalid);
    }

    #[test]
    fn same_password_gets_different_salts() {
        let h = cheap();
        let pw = Password::parse("password123").unwrap();
        assert_ne!(
            h.hash(&pw, &mut OsRng).unwrap(),
            h.hash(&pw, &mut OsRng).unwrap()
        );
    }

    #[test]
    fn other_parameters_ask_for_a_rehash() {
        let old = cheap();
        let pw = Password::parse("password123").unwrap();
        let phc = old.hash(&pw, &mut OsRng).unwrap();
        let new = Hasher::new(HashCost {
            memory_kib: 128,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        assert_eq!(
            new.verify(&phc, "password123"),
            Verdict::Valid { rehash: true }
        );
    }

    #[test]
    fn garbage_hash_is_invalid_not_a_panic() {
        assert_eq!(
            cheap().verify("not a phc string", "whatever1"),
            Verdict::Invalid
        );
        assert_eq!(cheap().verify("", "whatever1"), Verdict::Invalid);
    }

    #[test]
    fn owasp_is_the_default() {
        assert_eq!(
            HashCost::default(),
            HashCost {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1
            }
        );
    }
}
