//! The login throttle: it stops the guesser, never the owner.
//!
//! Attempts are counted in fixed windows per key, in a store, so every server
//! instance sees the same counts. Keys are fixed-size hashes ([`tag`]), so a
//! long or strange input never grows a store by more than one short row.
//!
//! - **Per client address** ([`ThrottlePolicy::PER_ADDRESS`]): every attempt
//!   is counted atomically before any work, so a flood of parallel guesses
//!   from one address cannot get past the limit; a success gives its slot
//!   back.
//! - **Per account and client** ([`ThrottlePolicy::PER_ACCOUNT_CLIENT`]): the
//!   client is a known device (a device cookie from an earlier successful
//!   login of this account) or else the address. One guesser is stopped after
//!   ten failures; the owner, on another device or address, is not.
//! - **Per account, from unknown devices** ([`AccountGate`]): failures from
//!   every address add up. Past [`AccountGate::FREE_FAILURES`], attempts from
//!   unknown devices take turns through a gate whose delay grows with the
//!   failures, up to [`AccountGate::MAX_DELAY`] — a slope, never a wall: the
//!   owner on a new device waits at most that long, and on a known device not
//!   at all.

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// A fixed-size key for `parts`: 32 hexadecimal characters of SHA-256 over
/// the parts, each length-prefixed so that no two lists of parts collide.
pub fn tag(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A key's failures within its current window, as a store reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureWindow {
    /// Failures since `started_at`.
    pub count: u32,
    /// Start of the window.
    pub started_at: OffsetDateTime,
}

/// How many failures a key may have within one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed per window; the next attempt is refused.
    pub max_failures: u32,
    /// Length of a window.
    pub window: Duration,
}

impl ThrottlePolicy {
    /// Per account and client (device or address): 10 failures per 15 minutes.
    pub const PER_ACCOUNT_CLIENT: Self = Self {
        max_failures: 10,
        window: Duration::minutes(15),
    };
    /// Per client address, over every account: 100 attempts that did not
    /// succeed per 15 minutes (several users may share one address behind a
    /// NAT).
    pub const PER_ADDRESS: Self = Self {
        max_failures: 100,
        window: Duration::minutes(15),
    };
    /// Registrations per client address: 20 attempts per 15 minutes.
    pub const REGISTRATIONS_PER_ADDRESS: Self = Self {
        max_failures: 20,
        window: Duration::minutes(15),
    };

    /// How long the key must wait, if it is throttled at `now`.
    pub fn retry_after(
        &self,
        failures: Option<FailureWindow>,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        let w = failures?;
        let ends = w.started_at + self.window;
        (w.count >= self.max_failures && now < ends).then(|| ends - now)
    }
}

/// The account-wide limit on attempts from devices the account has not seen.
///
/// Failures from every address and device add up per account within
/// [`AccountGate::WINDOW`]. Up to [`AccountGate::FREE_FAILURES`] of them (the
/// ceiling NIST SP 800-63B sets on consecutive failures) cost nothing extra;
/// after that, attempts from unknown devices pass one at a time through a
/// gate that stays shut for [`AccountGate::delay`] after each attempt: one
/// second, doubling with each further failure, at most
/// [`AccountGate::MAX_DELAY`]. Known devices never wait at the gate.
pub struct AccountGate;

impl AccountGate {
    /// Failures per account before the gate closes.
    pub const FREE_FAILURES: u32 = 100;
    /// The window the account's failures are counted in.
    pub const WINDOW: Duration = Duration::hours(1);
    /// The longest the gate stays shut after an attempt: the most an owner
    /// on a new device ever waits.
    pub const MAX_DELAY: Duration = Duration::seconds(60);

    /// How long the gate stays shut after an attempt when the account has
    /// `failures` recent failures; `None` below the free allowance.
    pub fn delay(failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(Self::FREE_FAILURES)?;
        // 2^6 s already exceeds the cap.
        let seconds = 1i64 << over.min(6);
        Some(Duration::seconds(seconds).min(Self::MAX_DELAY))
    }
}

/// The longest window any counter is kept for: older ones can be purged.
pub fn longest_window() -> Duration {
    [
        ThrottlePolicy::PER_ACCOUNT_CLIENT.window,
        ThrottlePolicy::PER_ADDRESS.window,
        ThrottlePolicy::REGISTRATIONS_PER_ADDRESS.window,
        AccountGate::WINDOW,
        AccountGate::MAX_DELAY,
    ]
    .into_iter()
    .max()
    .unwrap_or(AccountGate::WINDOW)
}

/// Whole seconds to put in a `Retry-After` header: rounded up, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.whole_seconds().max(0) as u64;
    let rounded = if wait.subsec_nanoseconds() > 0 {
        secs + 1
    } else {
        secs
    };
    rounded.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    #[test]
    fn below_the_limit_is_not_throttled() {
        let p = ThrottlePolicy::PER_ACCOUNT_CLIENT;
        assert_eq!(p.retry_after(None, T0), None);
        let w = FailureWindow {
            count: 9,
            started_at: T0,
        };
        assert_eq!(p.retry_after(Some(w), T0 + Duration::minutes(1)), None);
    }

    #[test]
    fn at_the_limit_waits_until_the_window_ends() {
        let p = ThrottlePolicy::PER_ACCOUNT_CLIENT;
        let w = FailureWindow {
            count: 10,
            started_at: T0,
        };
        assert_eq!(
            p.retry_after(Some(w), T0 + Duration::minutes(5)),
            Some(Duration::minutes(10))
        );
        assert_eq!(p.retry_after(Some(w), T0 + Duration::minutes(15)), None);
    }

    #[test]
    fn the_gate_delay_grows_to_its_cap() {
        assert_eq!(AccountGate::delay(0), None);
        assert_eq!(AccountGate::delay(99), None);
        assert_eq!(AccountGate::delay(100), Some(Duration::seconds(1)));
        assert_eq!(AccountGate::delay(101), Some(Duration::seconds(2)));
        assert_eq!(AccountGate::delay(105), Some(Duration::seconds(32)));
        assert_eq!(AccountGate::delay(106), Some(AccountGate::MAX_DELAY));
        assert_eq!(AccountGate::delay(u32::MAX), Some(AccountGate::MAX_DELAY));
    }

    #[test]
    fn tags_are_fixed_size_and_unambiguous() {
        let long = "x".repeat(60_000);
        assert_eq!(tag(&[&long]).len(), 32);
        assert_eq!(tag(&["ab", "c"]).len(), 32);
        assert_ne!(tag(&["ab", "c"]), tag(&["a", "bc"]));
        assert_eq!(tag(&["dave"]), tag(&["dave"]));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::milliseconds(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::seconds(3)), 3);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
