//! Why a credential was refused.
//!
//! Every refusal is typed, so that it becomes a `401` in one place of the
//! server, a metric label and a log field, and never a detail for the client:
//! the client learns only that it is not authenticated.

/// The reason a presented credential does not authenticate a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No credential was presented.
    #[error("no credential")]
    Missing,
    /// The credential is not of any format tessera issues.
    #[error("malformed credential")]
    Malformed,
    /// Well-formed, but no such session exists (never issued, or purged).
    #[error("unknown credential")]
    Unknown,
    /// The absolute lifetime is over.
    #[error("expired")]
    Expired,
    /// The session was idle longer than the idle timeout.
    #[error("idle timeout")]
    IdleExpired,
    /// The session was revoked (logout, revoke from another device, password change).
    #[error("revoked")]
    Revoked,
    /// The session's user no longer exists.
    #[error("user gone")]
    UserGone,
}

impl Refusal {
    /// A stable snake_case label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Expired => "expired",
            Self::IdleExpired => "idle_expired",
            Self::Revoked => "revoked",
            Self::UserGone => "user_gone",
        }
    }
}
