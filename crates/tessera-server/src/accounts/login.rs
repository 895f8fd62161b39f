//! Checking a username and password, with the throttle around it.
//!
//! The one path every login takes, whatever it issues afterwards (the
//! policies are in `tessera_core::throttle`):
//!
//! 1. Count the attempt against the client address, atomically, before any
//!    work: a flood of parallel guesses from one address each see their own
//!    number, and past the limit get `429` without a password check. A
//!    success gives its slot back.
//! 2. A username no account can have (see `Username::parse`) is an unknown
//!    user from here on: the dummy hash is checked so that the work and the
//!    answer are the same, and no counter or lookup is keyed by it.
//! 3. Take the account's turn (attempts on one account take turns within a
//!    process, see [`Turns`]) and count the attempt against the account *and
//!    this client* — the device, when the browser proved one with a device
//!    cookie, else the address. Ten failures stop this guesser, not the
//!    owner elsewhere.
//! 4. From a device the account has not seen, pass the account's gate: once
//!    the account has many failures from everywhere, such attempts go one at
//!    a time, with a delay that grows with the failures up to a bound.
//! 5. Verify the password — against the dummy hash when the user does not
//!    exist, so both failures cost the same and answer the same. On failure,
//!    count it for the account. On success, clear this client's count and
//!    store a fresh hash if the stored one used older parameters.
//! 6. After the login stores its session, [`Accounts::confirm_session`]
//!    checks that no password change slipped in between (see there).
//!
//! Every counter is keyed by a fixed-size hash, so no input grows a store by
//! more than a short row, and every refusal is an audit event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tessera_core::SessionRecord;
use tessera_core::account::key_of;
use tessera_core::password::Verdict;
use tessera_core::throttle::{
    AccountGate, FailureWindow, ThrottlePolicy, retry_after_seconds, tag,
};
use tessera_core::{Password, Username, session::ClientInfo};
use tessera_store::UserRecord;
use time::OffsetDateTime;

use super::audit::audit;
use super::{Accounts, Attempt, Denied, Outcome};

/// Login attempts on one account take turns within this process.
///
/// The attempt is counted before the password is checked, so that a burst of
/// parallel guesses cannot all get past the limit. If attempts on one
/// account ran at once, every one still being checked would count as a
/// failure for the others, and a few parallel *correct* logins (two tabs, a
/// password change while an app logs in) would throttle their own owner.
/// Taking turns, an attempt sees only the failures that really happened
/// (plus, across instances, at most one attempt in flight per instance).
/// A flood on one account waits in line: once it is throttled, each turn is
/// a store write and a `429`, without hashing.
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

/// The network a client address is counted under: an IPv4 address itself,
/// an IPv6 address's /64 (one subscriber's allocation: counting each of its
/// 2^64 addresses apart would be no limit at all), an IPv4-mapped IPv6
/// address as the IPv4 one. Anything else as given.
pub(super) fn network_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

/// The throttle keys of one attempt on one account.
struct Keys {
    /// Turns are taken per account.
    turn: String,
    /// This account from this client (device or address).
    pair: String,
    /// The account's failures from everywhere.
    account: String,
    /// The gate unknown devices pass one at a time.
    gate: String,
}

impl Keys {
    fn new(username: &str, client: &ClientInfo, device: Option<&str>) -> Self {
        let account = key_of(username);
        let pair = match (device, client.ip.as_deref()) {
            (Some(device), _) => tag(&["device", &account, device]),
            (None, Some(ip)) => tag(&["address", &account, &network_of(ip)]),
            (None, None) => tag(&["nowhere", &account]),
        };
        let account = tag(&["account", &account]);
        Self {
            turn: account.clone(),
            pair: format!("ac:{pair}"),
            gate: format!("g:{account}"),
            account: format!("a:{account}"),
        }
    }
}

impl Accounts {
    /// Checks the password of `attempt`. `what` labels the metric and the
    /// audit events (`session`, `token`, `password_change`).
    pub(super) async fn check_password(
        &self,
        what: &'static str,
        attempt: &Attempt<'_>,
        now: OffsetDateTime,
    ) -> Outcome<UserRecord> {
        let result = self.check(what, attempt, now).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.label(),
        };
        metrics::counter!("tessera_logins_total", "method" => what, "outcome" => outcome)
            .increment(1);
        result
    }

    fn throttled(
        &self,
        what: &'static str,
        attempt: &Attempt<'_>,
        limit: &'static str,
        wait: time::Duration,
    ) -> Denied {
        let retry_after = retry_after_seconds(wait);
        metrics::counter!("tessera_throttled_attempts_total", "limit" => limit).increment(1);
        audit!(
            info,
            "login_throttled",
            attempt.client,
            method = what,
            limit = limit,
            retry_after = retry_after
        );
        Denied::Throttled { retry_after }
    }

    async fn check(
        &self,
        what: &'static str,
        attempt: &Attempt<'_>,
        now: OffsetDateTime,
    ) -> Outcome<UserRecord> {
        let throttle = &self.stores.throttle;
        // A known device is bound to this one account, so it cannot spray
        // guesses across accounts: the address's limit, shared with everybody
        // behind the same NAT or proxy, does not apply to it (its own
        // per-account limit does).
        let address = attempt
            .client
            .ip
            .as_deref()
            .filter(|_| attempt.device.is_none())
            .map(|ip| format!("ip:{}", tag(&["address", &network_of(ip)])));
        if let Some(key) = &address
            && let Err(wait) = self.count(key, ThrottlePolicy::PER_ADDRESS, now).await?
        {
            return Err(self.throttled(what, attempt, "address", wait));
        }
        let result = if Username::parse(attempt.username).is_err() {
            // No account can have this name (a NUL byte, 60 KB of text, …):
            // the work and the answer are an unknown user's.
            self.verify(None, attempt.password).await?;
            audit!(
                info,
                "login_failed",
                attempt.client,
                method = what,
                user_id = "-",
                reason = "impossible_username"
            );
            Err(Denied::InvalidCredentials)
        } else {
            self.check_account(what, attempt, now).await
        };
        if result.is_ok()
            && let Some(key) = &address
        {
            throttle.forgive_failure(key).await?;
        }
        result
    }

    async fn check_account(
        &self,
        what: &'static str,
        attempt: &Attempt<'_>,
        now: OffsetDateTime,
    ) -> Outcome<UserRecord> {
        let throttle = &self.stores.throttle;
        let keys = Keys::new(attempt.username, &attempt.client, attempt.device.as_deref());
        let _turn = self.turns.take(&keys.turn).await;

        // Counted before the password is checked, in one atomic store call:
        // parallel guesses each see their own number. A success clears it.
        if let Err(wait) = self
            .count(&keys.pair, ThrottlePolicy::PER_ACCOUNT_CLIENT, now)
            .await?
        {
            return Err(self.throttled(what, attempt, "account_client", wait));
        }
        if attempt.device.is_none() {
            let failures = throttle
                .failures(&keys.account, now, AccountGate::WINDOW)
                .await?
                .map_or(0, |w| w.count);
            if let Some(delay) = AccountGate::delay(failures) {
                let gate = throttle.record_failure(&keys.gate, now, delay).await?;
                if gate.count > 1 {
                    // Turned away at the gate: not a failure of this client.
                    throttle.forgive_failure(&keys.pair).await?;
                    let wait = gate.started_at + delay - now;
                    return Err(self.throttled(what, attempt, "account", wait));
                }
            }
        }

        let user = self.stores.users.user_by_username(attempt.username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        match (user, self.verify(stored, attempt.password).await?) {
            (Some(mut user), Verdict::Valid { rehash }) if user.disabled_at.is_none() => {
                throttle.clear_failures(&keys.pair).await?;
                if rehash && let Some(hash) = self.upgrade_hash(&user, attempt.password).await {
                    user.password_hash = hash;
                }
                Ok(user)
            }
            (user, verdict) => {
                // A disabled user's right password is refused like a wrong one.
                throttle
                    .record_failure(&keys.account, now, AccountGate::WINDOW)
                    .await?;
                let (user_id, reason) = match (&user, verdict) {
                    (None, _) => ("-", "unknown_user"),
                    (Some(u), Verdict::Valid { .. }) => (u.id.as_str(), "user_disabled"),
                    (Some(u), _) => (u.id.as_str(), "wrong_password"),
                };
                audit!(
                    info,
                    "login_failed",
                    attempt.client,
                    method = what,
                    user_id = user_id,
                    reason = reason
                );
                Err(Denied::InvalidCredentials)
            }
        }
    }

    /// Counts an attempt against `key` before its outcome is known, or
    /// returns how long to wait if `key` is over `policy`'s limit. The count
    /// is one atomic store call, so parallel attempts each see their own
    /// number and no burst gets past the limit; a key already over it is
    /// refused after a read alone, so a flood writes nothing.
    pub(super) async fn count(
        &self,
        key: &str,
        policy: ThrottlePolicy,
        now: OffsetDateTime,
    ) -> Outcome<Result<(), time::Duration>> {
        let throttle = &self.stores.throttle;
        let seen = throttle.failures(key, now, policy.window).await?;
        if let Some(wait) = policy.retry_after(seen, now) {
            return Ok(Err(wait));
        }
        let counted = throttle.record_failure(key, now, policy.window).await?;
        let before = FailureWindow {
            count: counted.count.saturating_sub(1),
            ..counted
        };
        Ok(policy.retry_after(Some(before), now).map_or(Ok(()), Err))
    }

    async fn verify(&self, stored: Option<String>, password: &str) -> Outcome<Verdict> {
        self.passwords
            .verify(stored, password.to_owned())
            .await
            .map_err(|e| Denied::Internal(format!("password verification failed: {e}")))
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
        // From the store, not the cache: the change may come from another instance.
        let current = self.stores.users_uncached.user_by_id(&user.id).await?;
        if current.is_some_and(|u| u.password_hash == user.password_hash && u.disabled_at.is_none())
        {
            return Ok(());
        }
        self.stores
            .sessions
            .revoke_session(&user.id, &session.id, now)
            .await?;
        tracing::info!(user_id = %user.id, session_id = %session.id, "login raced a password change or a disabling: session revoked");
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

#[cfg(test)]
mod tests {
    use super::network_of;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(network_of("203.0.113.7"), "203.0.113.7");
        assert_eq!(network_of("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(
            network_of("2001:db8:1:2:aaaa::1"),
            network_of("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(network_of("2001:db8:1:2::9"), "2001:db8:1:2::/64");
        assert_ne!(network_of("2001:db8:1:2::1"), network_of("2001:db8:1:3::1"));
        assert_eq!(network_of("not an address"), "not an address");
    }
}
