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
    /// Well-formed, but no such session or token exists (never issued, or purged).
    #[error("unknown credential")]
    Unknown,
    /// The lifetime is over (`exp` passed, or the session's absolute lifetime).
    #[error("expired")]
    Expired,
    /// The session was idle longer than the idle timeout.
    #[error("idle timeout")]
    IdleExpired,
    /// The session was revoked (logout, revoke from another device, password change).
    #[error("revoked")]
    Revoked,
    /// The credential's user no longer exists.
    #[error("user gone")]
    UserGone,
    /// An operator disabled the credential's user.
    #[error("user disabled")]
    UserDisabled,
    /// The token's signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The token names a key (`kid`) this server does not know.
    #[error("unknown key")]
    UnknownKey,
    /// The token's `alg` is not the configured one (including `none`).
    #[error("wrong algorithm")]
    WrongAlgorithm,
    /// The token's `typ` is not `at+jwt`.
    #[error("wrong type")]
    WrongType,
    /// The token's `iss` is not this server.
    #[error("wrong issuer")]
    WrongIssuer,
    /// The token's `aud` is not this server's audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The token's `nbf` is in the future.
    #[error("not yet valid")]
    NotYetValid,
    /// A spent refresh token was presented again after the grace window.
    #[error("refresh token reused")]
    Reused,
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
            Self::UserDisabled => "user_disabled",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::WrongType => "wrong_type",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::NotYetValid => "not_yet_valid",
            Self::Reused => "reused",
        }
    }
}
