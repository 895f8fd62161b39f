//! Sessions: one server-side record per login, whichever method it used.
//!
//! A session has an absolute lifetime (from login) and, for cookie sessions,
//! an idle timeout (from the last use). Using a session moves its idle expiry
//! forward, but only when a noticeable part of the idle window has passed
//! ([`SessionPolicy::touch`]): writing to the store on every read would make
//! the hot path a write path.

use time::{Duration, OffsetDateTime};

use crate::{Refusal, SecretHash};

/// How a session was created, and so what credential it issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A browser session: the secret lives in an `HttpOnly` cookie.
    Cookie,
    /// A token login: the session is the refresh-token family.
    Token,
}

impl SessionKind {
    /// The name used in the API and in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Token => "token",
        }
    }

    /// Parses [`SessionKind::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cookie" => Some(Self::Cookie),
            "token" => Some(Self::Token),
            _ => None,
        }
    }
}

/// A session as the stores keep it. Holds the hash of the secret, never the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Public id (`ses_…`): shown in the device list, never a credential.
    pub id: String,
    /// SHA-256 of the session secret (cookie sessions).
    pub secret_hash: Option<SecretHash>,
    /// The owner.
    pub user_id: String,
    /// Cookie or token.
    pub kind: SessionKind,
    /// Login time.
    pub created_at: OffsetDateTime,
    /// Last use, to the touch granularity.
    pub last_seen_at: OffsetDateTime,
    /// End of the absolute lifetime.
    pub expires_at: OffsetDateTime,
    /// End of the idle window, if the session has one.
    pub idle_expires_at: Option<OffsetDateTime>,
    /// `User-Agent` at login, truncated.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<String>,
    /// When the session was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

impl SessionRecord {
    /// Whether the session authenticates a request at `now`.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), Refusal> {
        if self.revoked_at.is_some() {
            Err(Refusal::Revoked)
        } else if now >= self.expires_at {
            Err(Refusal::Expired)
        } else if self.idle_expires_at.is_some_and(|idle| now >= idle) {
            Err(Refusal::IdleExpired)
        } else {
            Ok(())
        }
    }

    /// Whether the session is live at `now` (not revoked, not expired).
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.check(now).is_ok()
    }

    /// The earlier of the absolute and the idle expiry.
    pub fn effective_expiry(&self) -> OffsetDateTime {
        match self.idle_expires_at {
            Some(idle) => idle.min(self.expires_at),
            None => self.expires_at,
        }
    }
}

/// Longest `User-Agent` kept with a session, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// The lifetimes of sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Idle timeout of cookie sessions.
    pub idle: Duration,
    /// Absolute lifetime of cookie sessions.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    /// The defaults of `docs/api.md`: 30 minutes idle, 24 hours absolute.
    fn default() -> Self {
        Self {
            idle: Duration::minutes(30),
            absolute: Duration::hours(24),
        }
    }
}

/// What the login learned about the client, kept for the device list.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// Client address.
    pub ip: Option<String>,
}

impl SessionPolicy {
    /// A new cookie session for `user_id`, starting at `now`.
    pub fn new_cookie_session(
        &self,
        id: String,
        secret_hash: SecretHash,
        user_id: String,
        client: ClientInfo,
        now: OffsetDateTime,
    ) -> SessionRecord {
        SessionRecord {
            id,
            secret_hash: Some(secret_hash),
            user_id,
            kind: SessionKind::Cookie,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.absolute,
            idle_expires_at: Some(now + self.idle),
            user_agent: client
                .user_agent
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
            ip: client.ip,
            revoked_at: None,
        }
    }

    /// How stale `last_seen_at` may get before a use is written back: a tenth
    /// of the idle window, at most a minute. The idle timeout is therefore
    /// exact to within that granularity, and a busy session costs at most one
    /// store write per granule.
    pub fn touch_granularity(&self) -> Duration {
        (self.idle / 10_i32).min(Duration::minutes(1))
    }

    /// The new `(last_seen_at, idle_expires_at)` if this use at `now` should
    /// be written back, `None` if the stored values are fresh enough.
    pub fn touch(
        &self,
        session: &SessionRecord,
        now: OffsetDateTime,
    ) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let idle_expires_at = session.idle_expires_at?;
        (now - session.last_seen_at >= self.touch_granularity())
            .then(|| (now, (now + self.idle).max(idle_expires_at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn policy() -> SessionPolicy {
        SessionPolicy {
            idle: Duration::minutes(30),
            absolute: Duration::hours(24),
        }
    }

    fn session() -> SessionRecord {
        policy().new_cookie_session(
            "ses_x".into(),
            SecretHash::of("tsr_ss_x"),
            "usr_x".into(),
            ClientInfo::default(),
            T0,
        )
    }

    #[test]
    fn fresh_session_is_valid() {
        let s = session();
        assert_eq!(s.check(T0), Ok(()));
        assert_eq!(s.expires_at, T0 + Duration::hours(24));
        assert_eq!(s.idle_expires_at, Some(T0 + Duration::minutes(30)));
    }

    #[test]
    fn idle_timeout_ends_an_unused_session() {
        let s = session();
        assert_eq!(s.check(T0 + Duration::minutes(29)), Ok(()));
        assert_eq!(
            s.check(T0 + Duration::minutes(30)),
            Err(Refusal::IdleExpired)
        );
    }

    #[test]
    fn use_extends_the_idle_window_but_not_the_absolute_lifetime() {
        let p = policy();
        let mut s = session();
        let mut now = T0;
        // Use it every 20 minutes for a day: idle never triggers, absolute does.
        while now < T0 + Duration::hours(24) {
            assert_eq!(s.check(now), Ok(()), "at {now}");
            if let Some((seen, idle)) = p.touch(&s, now) {
                s.last_seen_at = seen;
                s.idle_expires_at = Some(idle);
            }
            now += Duration::minutes(20);
        }
        assert_eq!(s.check(T0 + Duration::hours(24)), Err(Refusal::Expired));
    }

    #[test]
    fn touch_is_rate_limited_to_the_granularity() {
        let p = policy();
        let s = session();
        assert_eq!(p.touch_granularity(), Duration::minutes(1));
        assert_eq!(p.touch(&s, T0 + Duration::seconds(59)), None);
        let (seen, idle) = p.touch(&s, T0 + Duration::minutes(1)).unwrap();
        assert_eq!(seen, T0 + Duration::minutes(1));
        assert_eq!(idle, T0 + Duration::minutes(31));
    }

    #[test]
    fn short_idle_windows_touch_more_often() {
        let p = SessionPolicy {
            idle: Duration::seconds(2),
            absolute: Duration::hours(1),
        };
        assert_eq!(p.touch_granularity(), Duration::milliseconds(200));
    }

    #[test]
    fn revoked_wins_over_everything() {
        let mut s = session();
        s.revoked_at = Some(T0);
        assert_eq!(s.check(T0), Err(Refusal::Revoked));
    }

    #[test]
    fn effective_expiry_is_the_earlier_one() {
        let mut s = session();
        assert_eq!(s.effective_expiry(), T0 + Duration::minutes(30));
        s.idle_expires_at = Some(T0 + Duration::hours(25));
        assert_eq!(s.effective_expiry(), T0 + Duration::hours(24));
    }

    #[test]
    fn user_agent_is_truncated() {
        let s = policy().new_cookie_session(
            "ses_x".into(),
            SecretHash::of("x"),
            "usr_x".into(),
            ClientInfo {
                user_agent: Some("a".repeat(1000)),
                ip: None,
            },
            T0,
        );
        assert_eq!(s.user_agent.unwrap().len(), MAX_USER_AGENT_CHARS);
    }

    #[test]
    fn kind_round_trips() {
        for k in [SessionKind::Cookie, SessionKind::Token] {
            assert_eq!(SessionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SessionKind::parse("other"), None);
    }
}
