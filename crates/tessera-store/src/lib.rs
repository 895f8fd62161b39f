//! The narrow storage traits of tessera, one per kind of state.
//!
//! - [`UserStore`]: accounts and password hashes.
//! - [`SessionStore`]: sessions, found by the hash of their secret.
//! - [`ThrottleStore`]: login-failure counters.
//! - [`RefreshStore`]: refresh tokens, found by hash, spent atomically.
//! - [`KeyStore`]: signing keys (sealed) and server secrets.
//! - [`ChangeFeed`]: tells every process sharing the stores what changed
//!   (see [`feed`]).
//!
//! Each trait has few methods, and every operation that could race is one
//! store call that the backend makes atomic (for example "count this failure
//! and tell me the new count" is one upsert, never read-then-write in Rust).
//! Backends own storage only: the rules that decide what a record means live
//! in `tessera-core`.
//!
//! [`MemoryStore`] implements every trait for unit tests, and
//! [`conformance`] is the one suite every backend must pass.

use std::error::Error as StdError;

use async_trait::async_trait;
use tessera_core::refresh::SpendOutcome;
use tessera_core::throttle::FailureWindow;
use tessera_core::{SecretHash, SessionRecord};
use time::{Duration, OffsetDateTime};

pub mod conformance;
pub mod feed;
mod memory;
pub mod millis;
#[cfg(feature = "sqlx")]
pub mod sqlx_migrations;

pub use feed::{Change, ChangeFeed, FeedEvent, LocalFeed, Notice};
pub use memory::MemoryStore;

/// How a database backend is opened: what a command may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it (the file, the schema) if it is missing and apply pending
    /// migrations: what `tessera serve` and `tessera user add` do.
    Create,
    /// tessera's tables must exist already; pending migrations are applied.
    /// For commands that change an existing installation (`user delete`,
    /// `keys rotate`).
    Existing,
    /// tessera's tables must exist and be fully migrated; nothing is
    /// created, migrated or written (`user list`, `keys list`, `token
    /// decode`).
    ReadOnly,
}

/// A boxed error from a backend driver, kept as the source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong in a store, in the few kinds a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken (for example a username already taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The record to change does not exist.
    #[error("not found")]
    NotFound,
    /// The store could not be reached or did not answer in time: the request
    /// must fail with `503`, never be accepted silently.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else (corrupt data, a bug).
    #[error("store error")]
    Other(#[source] BoxError),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// An account as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// Public id (`usr_…`).
    pub id: String,
    /// The name as given at registration.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Registration time.
    pub created_at: OffsetDateTime,
    /// When an operator disabled the account, if it is disabled.
    pub disabled_at: Option<OffsetDateTime>,
}

/// Accounts and their password hashes.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. [`StoreError::Conflict`] if the username is taken,
    /// compared case-insensitively.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    /// The user whose name equals `username` ignoring ASCII case.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// The user with this id.
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// Replaces a user's password hash. [`StoreError::NotFound`] if there is no such user.
    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()>;
    /// Every user, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Deletes the user with this id. Returns whether there was one. The
    /// caller revokes the user's sessions too (they may live in another store).
    async fn delete_user(&self, user_id: &str) -> StoreResult<bool>;
    /// Disables the user (`Some(when)`) or enables them (`None`).
    /// [`StoreError::NotFound`] if there is no such user.
    async fn set_disabled(&self, user_id: &str, at: Option<OffsetDateTime>) -> StoreResult<()>;
}

/// Sessions: one record per login.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session. [`StoreError::Conflict`] on a duplicate id or secret hash.
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// The session whose secret hashes to `hash`, revoked or expired ones
    /// included (the caller applies the rules), purged ones not.
    async fn session_by_secret(&self, hash: &SecretHash) -> StoreResult<Option<SessionRecord>>;
    /// The session with this public id.
    async fn session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    /// Records a use: sets `last_seen_at`, and `idle_expires_at` when given
    /// (token sessions have no idle window). Does nothing for an unknown id.
    async fn touch_session(
        &self,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: Option<OffsetDateTime>,
    ) -> StoreResult<()>;
    /// The user's live sessions at `now` (not revoked, not expired, not idle), oldest first.
    async fn list_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>>;
    /// Revokes the session `id` if it belongs to `user_id` and is live.
    /// Returns whether it did.
    async fn revoke_session(
        &self,
        user_id: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Revokes every live session of `user_id` except `keep`. Returns the ids revoked.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<String>>;
    /// Number of live sessions of all users at `now`.
    async fn count_live_sessions(&self, now: OffsetDateTime) -> StoreResult<u64>;
    /// Deletes sessions that ended (expired, idled out or revoked) before
    /// `ended_before`. Returns how many.
    async fn purge_sessions(&self, ended_before: OffsetDateTime) -> StoreResult<u64>;
}

/// Login-failure counters in fixed windows.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Counts one failure for `key` atomically: if the current window started
    /// at least `window` before `now`, a new window starts at `now` with a
    /// count of one. Returns the window after counting.
    async fn record_failure(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<FailureWindow>;
    /// The current window of `key`, if one started less than `window` before `now`.
    async fn failures(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<Option<FailureWindow>>;
    /// Forgets `key`'s failures.
    async fn clear_failures(&self, key: &str) -> StoreResult<()>;
    /// Takes back one counted attempt of `key` (an attempt counted before it
    /// was known to succeed), atomically, never below zero.
    async fn forgive_failure(&self, key: &str) -> StoreResult<()>;
    /// Deletes windows that started before `before`.
    async fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

/// A refresh token as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRecord {
    /// SHA-256 of the token.
    pub hash: SecretHash,
    /// The family: the public id of the token login's session.
    pub session_id: String,
    /// The owner.
    pub user_id: String,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// When it stops being accepted (the family's end).
    pub expires_at: OffsetDateTime,
    /// When it was spent, if it was.
    pub spent_at: Option<OffsetDateTime>,
}

/// Refresh tokens.
#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Stores the first token of a family.
    async fn create_refresh(&self, token: &RefreshRecord) -> StoreResult<()>;
    /// Spends the token hashing to `presented` at `now`, atomically:
    ///
    /// - live and unspent: mark it spent and store `successor` (same family,
    ///   same expiry, issued `now`) → [`SpendOutcome::Rotated`];
    /// - spent no more than `grace` ago, `grace` not zero → [`SpendOutcome::Grace`];
    /// - spent earlier → [`SpendOutcome::Reused`] (the caller revokes the family);
    /// - unknown or expired → [`SpendOutcome::Unknown`].
    async fn spend_refresh(
        &self,
        presented: &SecretHash,
        successor: &SecretHash,
        now: OffsetDateTime,
        grace: Duration,
    ) -> StoreResult<SpendOutcome>;
    /// The token hashing to `hash`.
    async fn refresh_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<RefreshRecord>>;
    /// Deletes tokens that expired before `before`.
    async fn purge_refresh(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

/// A signing key as stored: private part sealed under the master key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// JOSE algorithm name.
    pub alg: String,
    /// `nonce ‖ ciphertext ‖ tag` of the private material, sealed with the kid as label.
    pub sealed_private: Vec<u8>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When a newer key of the same algorithm replaced it, if one did.
    pub superseded_at: Option<OffsetDateTime>,
}

/// Signing keys and named server secrets, shared by every instance.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key, newest first.
    async fn keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Stores `key` unless a current (not superseded) key of its algorithm
    /// exists, atomically. Returns the current key afterwards, whichever won.
    async fn ensure_current_key(&self, key: &StoredKey) -> StoreResult<StoredKey>;
    /// Stores `key` as the current key of its algorithm and marks the previous
    /// current one superseded at `key.created_at`, atomically (rotation).
    async fn rotate_key(&self, key: &StoredKey) -> StoreResult<()>;
    /// The sealed secret called `name`, storing `candidate` first if there is
    /// none (first writer wins, so every instance ends up with the same one).
    async fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;
}

/// A store that can say whether it answers, for `/readyz`.
#[async_trait]
pub trait Ping: Send + Sync {
    /// Succeeds when the backend answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;
}
