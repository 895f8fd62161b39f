//! Password hashing off the async runtime, a bounded number at once.
//!
//! Each argon2id hash takes about 20 ms of CPU and 19 MiB of memory. Running
//! it on a runtime thread would stall every other request on that thread, and
//! running unboundedly many at once would let a login flood exhaust memory. So
//! hashes run on tokio's blocking pool behind a semaphore with one permit per
//! core: a flood of logins queues here while token and session checks go on.
//!
//! An unknown username is verified against a dummy hash made at start with the
//! same parameters, so it costs as much as a wrong password (no timing oracle).

use std::sync::Arc;

use rand_core::OsRng;
use tessera_core::password::{HashCost, HashError, Hasher, Verdict};
use tessera_core::{Password, secret};
use tokio::sync::Semaphore;

/// The bounded hashing pool.
pub struct Passwords {
    hasher: Hasher,
    permits: Semaphore,
    dummy: String,
}

impl Passwords {
    /// A pool hashing with `cost`, `concurrency` at a time.
    pub fn new(cost: HashCost, concurrency: usize) -> Result<Self, HashError> {
        let hasher = Hasher::new(cost)?;
        let filler = secret::random_token("", &mut OsRng);
        let dummy_password = Password::parse(&filler).map_err(|_| unreachable_err())?;
        let dummy = hasher.hash(&dummy_password, &mut OsRng)?;
        Ok(Self {
            hasher,
            permits: Semaphore::new(concurrency.max(1)),
            dummy,
        })
    }

    /// Hashes a new password.
    pub async fn hash(self: &Arc<Self>, password: Password) -> Result<String, HashError> {
        let this = self.clone();
        self.run(move || this.hasher.hash(&password, &mut OsRng))
            .await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// there is no such user (always [`Verdict::Invalid`] then, after the same work).
    pub async fn verify(
        self: &Arc<Self>,
        stored: Option<String>,
        password: String,
    ) -> Result<Verdict, HashError> {
        let this = self.clone();
        self.run(move || match stored {
            Some(stored) => this.hasher.verify(&stored, &password),
            None => {
                let _ = this.hasher.verify(&this.dummy, &password);
                Verdict::Invalid
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| unreachable_err())?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| unreachable_err())
    }
}

fn unreachable_err() -> HashError {
    // Only a closed semaphore, a panicked hash or a bad dummy can get here.
    HashError::internal("password hashing task failed")
}
