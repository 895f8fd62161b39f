//! Refresh tokens: opaque, rotated on every use, organised in families.
//!
//! A refresh token is `tsr_rt_` followed by 256 random bits in base64url; only
//! its SHA-256 is stored. A token login's family *is* its session: the family
//! ends when the session is revoked or its lifetime is over.
//!
//! Spending a token is one atomic store operation that reports a
//! [`SpendOutcome`]. The successor of a token is not random but derived —
//! HMAC-SHA256 under a server secret of the token presented — so that within
//! the `--refresh-grace` window every presentation of a just-spent token gets
//! the *same* successor (parallel refreshes from several tabs agree), without
//! any refresh token ever being stored in clear.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Rng;
use time::{Duration, OffsetDateTime};

use crate::secret::{SecretHash, is_token, random_token};

/// The prefix of every refresh token.
pub const REFRESH_TOKEN_PREFIX: &str = "tsr_rt_";

/// A refresh token in clear. `Debug` redacts it.
#[derive(Clone)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// A fresh random token (the first of a family).
    pub fn generate(rng: &mut dyn Rng) -> Self {
        Self(random_token(REFRESH_TOKEN_PREFIX, rng))
    }

    /// Accepts a presented token if it has the right prefix and alphabet.
    pub fn parse(raw: &str) -> Option<Self> {
        is_token(REFRESH_TOKEN_PREFIX, raw).then(|| Self(raw.to_owned()))
    }

    /// The successor of this token: `tsr_rt_` + base64url(HMAC-SHA256(key, token)).
    pub fn successor(&self, key: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(self.0.as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let mut out = String::from(REFRESH_TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(digest, &mut out);
        Self(out)
    }

    /// The token in clear, for the response only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 under which it is stored.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// What spending a refresh token did, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendOutcome {
    /// The token was live and is now spent; its successor was stored.
    Rotated {
        /// The family (session) id.
        session_id: String,
    },
    /// The token was spent within the grace window: the same successor stands.
    Grace {
        /// The family (session) id.
        session_id: String,
    },
    /// The token was spent before the grace window: theft. The caller revokes the family.
    Reused {
        /// The family (session) id.
        session_id: String,
    },
    /// No such token, or it expired.
    Unknown,
}

/// What presenting a token that could not be spent means: the rule every
/// store applies once its compare-and-set found the token not live and
/// unspent. Expired (or unknown) is [`SpendOutcome::Unknown`]; spent no
/// more than `grace` ago, with a non-zero `grace`, is
/// [`SpendOutcome::Grace`]; spent earlier is [`SpendOutcome::Reused`].
pub fn classify_unspendable(
    session_id: String,
    spent_at: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
    grace: Duration,
) -> SpendOutcome {
    match spent_at {
        _ if expires_at <= now => SpendOutcome::Unknown,
        Some(spent) if grace > Duration::ZERO && now - spent <= grace => {
            SpendOutcome::Grace { session_id }
        }
        _ => SpendOutcome::Reused { session_id },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn format_and_parse() {
        let t = RefreshToken::generate(&mut OsRng);
        assert!(t.expose().starts_with("tsr_rt_") && t.expose().len() == 50);
        assert!(RefreshToken::parse(t.expose()).is_some());
        assert!(RefreshToken::parse(&t.expose().replace("tsr_rt_", "tsr_ss_")).is_none());
        assert!(!format!("{t:?}").contains(&t.expose()[7..]));
    }

    #[test]
    fn a_second_presentation_is_grace_then_reuse() {
        use time::macros::datetime;
        let t0 = datetime!(2030-01-01 00:00 UTC);
        let exp = t0 + Duration::days(14);
        let s = || "ses_f".to_owned();
        let grace = Duration::seconds(10);
        let at = |secs| t0 + Duration::seconds(secs);
        assert_eq!(
            classify_unspendable(s(), Some(t0), exp, at(10), grace),
            SpendOutcome::Grace { session_id: s() }
        );
        assert_eq!(
            classify_unspendable(s(), Some(t0), exp, at(11), grace),
            SpendOutcome::Reused { session_id: s() }
        );
        // Strict mode: even at the same instant a second presentation is reuse.
        assert_eq!(
            classify_unspendable(s(), Some(t0), exp, t0, Duration::ZERO),
            SpendOutcome::Reused { session_id: s() }
        );
        assert_eq!(
            classify_unspendable(s(), Some(t0), exp, exp, grace),
            SpendOutcome::Unknown
        );
    }

    #[test]
    fn successor_is_deterministic_per_key_and_well_formed() {
        let t = RefreshToken::generate(&mut OsRng);
        let a = t.successor(b"server secret one");
        let b = t.successor(b"server secret one");
        let c = t.successor(b"server secret two");
        assert_eq!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
        assert_ne!(a.expose(), t.expose());
        assert!(RefreshToken::parse(a.expose()).is_some());
        // The chain goes on: a successor has its own distinct successor.
        assert_ne!(a.successor(b"server secret one").expose(), a.expose());
    }
}
