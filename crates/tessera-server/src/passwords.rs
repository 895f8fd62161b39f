//! Password hashing off the async runtime, a bounded number at once.
//!
//! Each argon2id hash takes about 20 ms of CPU and 19 MiB of memory. Running
//! it on a runtime thread would stall every other request on that thread, and
//! running unboundedly many at once would let a login flood exhaust memory. So
//! hashes run on a fixed set of threads of their own, one per core: a flood
//! of logins queues here while token and session checks go on.
//!
//! Fixed threads rather than tokio's blocking pool: the allocator keeps a
//! freed 19 MiB block in the arena of the thread that used it, and the
//! blocking pool hands hashes to ever new threads, so resident memory crept
//! up by a block per thread ever used (+23% in a 90 s soak); a fixed set
//! holds one block each, for good.
//!
//! An unknown username is verified against a dummy hash made at start with the
//! same parameters, so it costs as much as a wrong password (no timing oracle).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use rand_core::OsRng;
use tessera_core::password::{HashCost, HashError, Hasher, Verdict};
use tessera_core::{Password, secret};

type Job = Box<dyn FnOnce() + Send>;

/// The bounded hashing pool.
pub struct Passwords {
    hasher: Hasher,
    /// The hashing threads' queue; they stop when it is dropped.
    jobs: Sender<Job>,
    /// Hashes waiting for a thread (the `tessera_password_hash_queue_depth`
    /// gauge).
    waiting: Arc<AtomicUsize>,
    dummy: String,
}

/// One hashing thread: runs jobs until the queue is gone. A job that panics
/// drops its answer channel (its caller gets an error), not the thread.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => {
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

impl Passwords {
    /// A pool hashing with `cost`, `concurrency` at a time.
    pub fn new(cost: HashCost, concurrency: usize) -> Result<Self, HashError> {
        let hasher = Hasher::new(cost)?;
        let filler = secret::random_token("", &mut OsRng);
        let dummy_password = Password::parse(&filler).map_err(|_| unreachable_err())?;
        let dummy = hasher.hash(&dummy_password, &mut OsRng)?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..concurrency.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("tessera-hash-{i}"))
                .spawn(move || work(&queue))
                .map_err(|_| HashError::internal("starting a password hashing thread failed"))?;
        }
        Ok(Self {
            hasher,
            jobs,
            waiting: Arc::default(),
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
        let (answer, answered) = tokio::sync::oneshot::channel();
        let waiting = self.waiting.clone();
        queue_depth(waiting.fetch_add(1, Ordering::Relaxed) + 1);
        let job: Job = Box::new(move || {
            queue_depth(waiting.fetch_sub(1, Ordering::Relaxed).saturating_sub(1));
            let _ = answer.send(f());
        });
        self.jobs.send(job).map_err(|_| unreachable_err())?;
        answered.await.map_err(|_| unreachable_err())
    }
}

fn queue_depth(n: usize) {
    metrics::gauge!("tessera_password_hash_queue_depth").set(n as f64);
}

fn unreachable_err() -> HashError {
    // Only stopped hashing threads, a panicked hash or a bad dummy can get here.
    HashError::internal("password hashing task failed")
}
