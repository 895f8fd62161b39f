//! Checking a username and password, with the throttle around it.
//!
//! The one path every login takes, whatever it issues afterwards:
//!
//! 1. If the client address had too many recent failures, refuse with `429`
//!    and `Retry-After` before looking at the password. Then take the
//!    username's turn (attempts on one username take turns within a process,
//!    see [`Turns`]) and count the attempt against the username, atomically,
//!    so parallel guesses cannot all slip under the limit, even across
//!    instances; if the username already had too many recent failures, refuse
//!    the same way.
//! 2. Verify the password — against the dummy hash when the user does not
//!    exist, so both failures cost the same and answer the same. A username
//!    no account can have (see `Username::parse`) is such a user from the
//!    start: no counter or lookup is keyed by it, so no store sees a NUL
//!    byte or grows by a 60 KB name.
//! 3. On failure, count it for the address too (the username's is counted).
//!    On success, clear the username's count (which gives back the slot this
//!    attempt took), and store a fresh hash if the stored one used older
//!    parameters.
//! 4. After the login stores its session, [`Accounts::confirm_session`]
//!    checks that no password change slipped in between (see there).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tessera_core::SessionRecord;
use tessera_core::account::key_of;
use tessera_core::password::Verdict;
use tessera_core::throttle::{FailureWindow, ThrottlePolicy, retry_after_seconds};
use tessera_core::{Password, Username, session::ClientInfo};
use tessera_store::UserRecord;
use time::OffsetDateTime;

use super::{Accounts, Denied, Outcome};

/// The throttle keys of a login attempt, each with its policy.
fn keys(username: &str, client: &ClientInfo) -> Vec<(String, ThrottlePolicy)> {
    let mut keys = vec![(
        format!("user:{}", key_of(username)),
        ThrottlePolicy::PER_USERNAME,
    )];
    if let Some(ip) = &client.ip {
        keys.push((format!("ip:{ip}"), ThrottlePolicy::PER_ADDRESS));
    }
    keys
}

/// Login attempts on one username take turns within this process.
///
/// The attempt is counted before the password is checked, so that a burst of
/// parallel guesses cannot all get past the limit. If attempts on one
/// username ran at once, every one still being checked would count as a
/// failure for the others, and a few parallel *correct* logins (two tabs, a
/// password change while an app logs in) would throttle their own owner.
/// Taking turns, an attempt sees only the failures that really happened
/// (plus, across instances, at most one attempt in flight per instance).
/// A flood on one username waits in line: once the username is throttled,
/// each turn is one store write and a `429`, without hashing.
#[derive(Default)]
pub(super) struct Turns {
    locks: Mutex<TurnMap>,
}

#[derive(Default)]
struct TurnMap {
    locks: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
    /// The size at which dead entries are swept next, so that sweeping costs
    /// amortised O(1) per attempt and the map holds about as many entries as
    /// there are attempts in flight.
    sweep_at: usize,
}

impl Turns {
    async fn take(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            match map.locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if map.locks.len() >= map.sweep_at {
                        map.locks.retain(|_, lock| lock.strong_count() > 0);
                        map.sweep_at = (map.locks.len() * 2).max(1024);
                    }
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.locks.insert(key.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

fn throttled(wait: time::Duration) -> Denied {
    Denied::Throttled {
        retry_after: retry_after_seconds(wait),
    }
}

impl Accounts {
    /// Refuses with [`Denied::Throttled`] if any of `keys` is throttled at `now`.
    async fn ensure_not_throttled(
        &self,
        keys: &[(String, ThrottlePolicy)],
        now: OffsetDateTime,
    ) -> Outcome<()> {
        for (key, policy) in keys {
            let window = self
                .stores
                .throttle
                .failures(key, now, policy.window)
                .await?;
            if let Some(wait) = policy.retry_after(window, now) {
                return Err(throttled(wait));
            }
        }
        Ok(())
    }

    /// Counts a failure against each of `keys`.
    async fn record_failures(
        &self,
        keys: &[(String, ThrottlePolicy)],
        now: OffsetDateTime,
    ) -> Outcome<()> {
        for (key, policy) in keys {
            self.stores
                .throttle
                .record_failure(key, now, policy.window)
                .await?;
        }
        Ok(())
    }

    /// Checks `password` for the user `username`. `what` labels the metric
    /// (`session`, `token`, `password_change`).
    pub(super) async fn check_password(
        &self,
        what: &'static str,
        username: &str,
        password: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<UserRecord> {
        let result = self.check(username, password, client, now).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.label(),
        };
        metrics::counter!("tessera_logins_total", "method" => what, "outcome" => outcome)
            .increment(1);
        result
    }

    async fn check(
        &self,
        username: &str,
        password: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<UserRecord> {
        let keys = keys(username, client);
        let (user_key, user_policy) = &keys[0];
        // A throttled address is refused before anything is counted against the
        // account: those attempts are not failures of this username.
        self.ensure_not_throttled(&keys[1..], now).await?;
        if Username::parse(username).is_err() {
            // No account can have this name (a NUL byte, 60 KB of text, …):
            // no counter or lookup is keyed by it. The address's failure
            // counts, and the work and the answer are an unknown user's.
            self.passwords
                .verify(None, password.to_owned())
                .await
                .map_err(|e| Denied::Internal(format!("password verification failed: {e}")))?;
            self.record_failures(&keys[1..], now).await?;
            return Err(Denied::InvalidCredentials);
        }
        let _turn = self.turns.take(user_key).await;
        // The attempt counts against the username before the password is
        // checked, in one atomic store call: parallel guesses each see their own
        // number, so no burst gets past the limit. A success clears the count.
        let counted = self
            .stores
            .throttle
            .record_failure(user_key, now, user_policy.window)
            .await?;
        let before = FailureWindow {
            count: counted.count.saturating_sub(1),
            ..counted
        };
        if let Some(wait) = user_policy.retry_after(Some(before), now) {
            return Err(throttled(wait));
        }

        let user = self.stores.users.user_by_username(username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verdict = self
            .passwords
            .verify(stored, password.to_owned())
            .await
            .map_err(|e| Denied::Internal(format!("password verification failed: {e}")))?;

        match (user, verdict) {
            (Some(mut user), Verdict::Valid { rehash }) => {
                self.stores.throttle.clear_failures(user_key).await?;
                if rehash && let Some(hash) = self.upgrade_hash(&user, password).await {
                    user.password_hash = hash;
                }
                Ok(user)
            }
            _ => {
                // The username's failure is already counted; the address's now.
                self.record_failures(&keys[1..], now).await?;
                Err(Denied::InvalidCredentials)
            }
        }
    }

    /// Makes sure a session created by a login still stands: if the password
    /// changed (or the user went) while the login was checking the old one, the
    /// change's "revoke every other session" may have run before this session
    /// existed. So after storing the session, the login re-reads the hash it
    /// verified; if it is no longer the stored one, the new session is revoked
    /// and the login refused. The change sets the hash before it revokes, so
    /// every interleaving ends with the session revoked.
    pub(super) async fn confirm_session(
        &self,
        user: &UserRecord,
        session: &SessionRecord,
        now: OffsetDateTime,
    ) -> Outcome<()> {
        let current = self.stores.users.user_by_id(&user.id).await?;
        if current.is_some_and(|u| u.password_hash == user.password_hash) {
            return Ok(());
        }
        self.stores
            .sessions
            .revoke_session(&user.id, &session.id, now)
            .await?;
        tracing::info!(user_id = %user.id, session_id = %session.id, "login raced a password change: session revoked");
        Err(Denied::InvalidCredentials)
    }

    /// Stores a hash with the current parameters and returns it. A failure here
    /// only delays the upgrade to the next login, so it is logged, not returned.
    async fn upgrade_hash(&self, user: &UserRecord, password: &str) -> Option<String> {
        let password = Password::parse(password).ok()?;
        match self.passwords.hash(password).await {
            Ok(hash) => match self.stores.users.set_password_hash(&user.id, &hash).await {
                Ok(()) => Some(hash),
                Err(e) => {
                    tracing::warn!(user_id = %user.id, error = %crate::error::error_chain(&e), "password rehash not stored");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(user_id = %user.id, error = %e, "password rehash failed");
                None
            }
        }
    }
}
