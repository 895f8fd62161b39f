//! The rules of tessera, free of I/O.
//!
//! Everything that decides whether a credential is good lives here: the shape
//! of usernames and passwords, password hashing, the format and hashing of
//! session secrets, session lifetimes (idle and absolute), the CSRF token, the
//! login-failure throttle and the typed reasons for refusing a request.
//!
//! Nothing in this crate reads the clock, touches the network or a file: the
//! current time and the random source are parameters, so every rule can be
//! tested with a fake clock and a seeded generator, without sleeping. CI greps
//! this crate for clock reads (`.ci/run`).

pub mod account;
pub mod csrf;
pub mod device;
pub mod ids;
pub mod jwt;
pub mod password;
pub mod refresh;
pub mod refusal;
pub mod sealed;
pub mod secret;
pub mod session;
pub mod throttle;

pub use account::{AccountError, Password, Username};
pub use refusal::Refusal;
pub use secret::{SecretHash, SessionSecret};
pub use session::{SessionKind, SessionPolicy, SessionRecord};

/// The random source every rule takes: a cryptographically secure generator.
///
/// The server passes the operating system's CSPRNG; tests may pass a seeded one.
pub use rand_core::CryptoRngCore as Rng;
