//! The login throttle: repeated failures slow an attacker down; success never
//! counts.
//!
//! Failures are counted per key (the lowercased username, and the client
//! address) in fixed windows. Once a key reaches its limit within a window,
//! further attempts on it are refused with `429` until the window ends —
//! before the password is checked, so a throttled guess learns nothing. A
//! successful login clears the username's count. The counts themselves live in
//! a store, so every server instance sees the same ones.

use time::{Duration, OffsetDateTime};

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
    /// Per username: 10 failures per 15 minutes.
    pub const PER_USERNAME: Self = Self {
        max_failures: 10,
        window: Duration::minutes(15),
    };
    /// Per client address: 100 failures per 15 minutes (several users may
    /// share one address behind a NAT).
    pub const PER_ADDRESS: Self = Self {
        max_failures: 100,
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
        let p = ThrottlePolicy::PER_USERNAME;
        assert_eq!(p.retry_after(None, T0), None);
        let w = FailureWindow {
            count: 9,
            started_at: T0,
        };
        assert_eq!(p.retry_after(Some(w), T0 + Duration::minutes(1)), None);
    }

    #[test]
    fn at_the_limit_waits_until_the_window_ends() {
        let p = ThrottlePolicy::PER_USERNAME;
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
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::milliseconds(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::seconds(3)), 3);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
