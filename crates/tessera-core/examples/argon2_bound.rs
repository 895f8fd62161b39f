//! The login bound of `scripts/bench`: how many password checks one core
//! does per second with the server's own hasher and default cost
//! (`HashCost::default()`, argon2id m=19456 KiB, t=2, p=1), the work every
//! successful `POST /v1/sessions` must do once.
//!
//!   taskset -c 0 target/dist/examples/argon2_bound [N]     (default 30)
//!
//! Prints one line: `argon2_bound <checks per second> <ms per check> <N>`.

use std::error::Error;
use std::time::Instant;

use rand_core::OsRng;
use tessera_core::Password;
use tessera_core::password::{HashCost, Hasher, Verdict};

fn main() -> Result<(), Box<dyn Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let hasher = Hasher::new(HashCost::default())?;
    let password = "bench-password-correct-horse";
    let stored = hasher.hash(&Password::parse(password)?, &mut OsRng)?;
    let check = || match hasher.verify(&stored, password) {
        Verdict::Valid { .. } => Ok(()),
        Verdict::Invalid => Err("the password did not verify"),
    };
    // One check to warm caches and the allocator, not counted.
    check()?;
    let start = Instant::now();
    for _ in 0..n {
        check()?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "argon2_bound {:.2} {:.2} {n}",
        f64::from(n) / secs,
        secs * 1000.0 / f64::from(n)
    );
    Ok(())
}
