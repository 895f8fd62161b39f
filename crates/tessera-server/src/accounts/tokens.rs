//! The token operations: log in for tokens, refresh with rotation, revoke.
//!
//! A token login's refresh-token family *is* a session of kind `token`, so
//! these write sessions and refresh tokens through the same stores as
//! [`Accounts`], whose password check they share.

use std::sync::Arc;

use rand_core::OsRng;
use tessera_core::jwt::TokenRules;
use tessera_core::refresh::{RefreshToken, SpendOutcome};
use tessera_core::session::ClientInfo;
use tessera_core::{SessionKind, SessionRecord, ids};
use tessera_store::RefreshRecord;
use time::{Duration, OffsetDateTime};

use super::audit::audit;
use super::{Accounts, Attempt, Denied, Outcome};
use crate::keys::Keys;

/// Where the client wants its tokens: in the response body, or in
/// `HttpOnly` cookies. Only the `tessera_tokens_issued_total` metric tells
/// them apart here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the body.
    Body,
    /// In cookies.
    Cookie,
}

impl Delivery {
    fn label(self) -> &'static str {
        match self {
            Self::Body => "body",
            Self::Cookie => "cookie",
        }
    }
}

/// What a token login or a refresh hands out.
pub struct TokenGrant {
    /// The user's id.
    pub user_id: String,
    /// The username as registered.
    pub username: String,
    /// The token session (the refresh family).
    pub session: SessionRecord,
    /// The signed access token (a JWT).
    pub access_token: String,
    /// Seconds the access token lives: the configured lifetime, or what is
    /// left of the session.
    pub expires_in: i64,
    /// The new refresh token (only its hash is stored).
    pub refresh_token: RefreshToken,
    /// Seconds the refresh family has left.
    pub refresh_expires_in: i64,
}

/// The settings token operations follow.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// What access tokens claim and how they are checked.
    pub rules: TokenRules,
    /// How long a refresh family (a token session) lives.
    pub refresh_ttl: Duration,
    /// How long a spent refresh token still gets the same successor.
    pub refresh_grace: Duration,
    /// How long a cookie session lives at most (bounds how old an access
    /// token presented for revocation may be).
    pub session_ttl: Duration,
}

/// The token operations.
#[derive(Clone)]
pub struct Tokens {
    accounts: Accounts,
    keys: Arc<Keys>,
    settings: Arc<TokenSettings>,
}

impl Tokens {
    /// Token operations over `accounts`' stores, signing with `keys`.
    pub fn new(accounts: Accounts, keys: Arc<Keys>, settings: TokenSettings) -> Self {
        Self {
            accounts,
            keys,
            settings: Arc::new(settings),
        }
    }

    /// Checks the password, starts a token session (a refresh family) and
    /// issues an access and a refresh token.
    pub async fn log_in(
        &self,
        attempt: Attempt<'_>,
        delivery: Delivery,
        now: OffsetDateTime,
    ) -> Outcome<TokenGrant> {
        let accounts = &self.accounts;
        let user = accounts.check_password("token", &attempt, now).await?;
        let session = self.new_session(&user.id, attempt.client, now);
        accounts.stores.sessions.create_session(&session).await?;
        let refresh = RefreshToken::generate(&mut OsRng);
        accounts
            .stores
            .refresh
            .create_refresh(&RefreshRecord {
                hash: refresh.hash(),
                session_id: session.id.clone(),
                user_id: user.id.clone(),
                issued_at: now,
                expires_at: session.expires_at,
                spent_at: None,
            })
            .await?;
        accounts.confirm_session(&user, &session, now).await?;
        audit!(
            info,
            "login_succeeded",
            session,
            method = "token",
            user_id = user.id.as_str(),
            session_id = session.id.as_str(),
        );
        self.grant(user.id, user.username, session, refresh, delivery, now)
    }

    /// Spends the refresh token `presented` and issues its successor. A spent
    /// token presented again is theft — its whole session ends, and so do the
    /// access tokens it issued — unless it is the direct predecessor of the
    /// live token, presented again within the grace window (a client that
    /// lost the answer): that one gets the same successor again.
    pub async fn refresh(
        &self,
        presented: &str,
        delivery: Delivery,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<TokenGrant> {
        let stores = &self.accounts.stores;
        let refused = |reason: &'static str| {
            metrics::counter!("tessera_refreshes_total", "outcome" => reason).increment(1);
            Denied::InvalidToken
        };
        let Some(presented) = RefreshToken::parse(presented) else {
            return Err(refused("malformed"));
        };
        let successor = presented.successor(self.keys.refresh_secret());
        let outcome = stores
            .refresh
            .spend_refresh(
                &presented.hash(),
                &successor.hash(),
                now,
                self.settings.refresh_grace,
            )
            .await?;
        let (session_id, label) = match outcome {
            SpendOutcome::Rotated { session_id } => (session_id, "rotated"),
            SpendOutcome::Grace { session_id } => {
                // Grace covers the direct predecessor of the live token only:
                // if the successor was spent as well, the token presented is
                // an older ancestor, and that is reuse.
                let live = stores.refresh.refresh_by_hash(&successor.hash()).await?;
                if live.is_none_or(|r| r.spent_at.is_some()) {
                    return Err(self.reused(&session_id, client, now).await?);
                }
                (session_id, "grace")
            }
            SpendOutcome::Reused { session_id } => {
                return Err(self.reused(&session_id, client, now).await?);
            }
            SpendOutcome::Unknown => return Err(refused("unknown")),
        };
        // From the store, not the cache: a refresh extends the session's
        // reach, so it must see a revocation made a moment ago anywhere.
        let Some(session) = stores.sessions_uncached.session_by_id(&session_id).await? else {
            return Err(refused("unknown_session"));
        };
        if !session.is_live(now) {
            return Err(refused("revoked"));
        }
        let Some(user) = stores.users_uncached.user_by_id(&session.user_id).await? else {
            return Err(refused("user_gone"));
        };
        if user.disabled_at.is_some() {
            return Err(refused("user_disabled"));
        }
        metrics::counter!("tessera_refreshes_total", "outcome" => label).increment(1);
        // A refresh is the token session's use: the device list shows it.
        stores
            .sessions
            .touch_session(&session.id, now, None)
            .await?;
        self.grant(user.id, user.username, session, successor, delivery, now)
    }

    /// A spent refresh token of the session `session_id` came back: someone
    /// holds a token that was already exchanged. Ends the whole family (its
    /// access tokens die with the session) and returns the refusal.
    async fn reused(
        &self,
        session_id: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<Denied> {
        let stores = &self.accounts.stores;
        let mut user_id = String::from("-");
        if let Some(s) = stores.sessions.session_by_id(session_id).await? {
            stores
                .sessions
                .revoke_session(&s.user_id, &s.id, now)
                .await?;
            user_id = s.user_id;
            super::sessions_ended("refresh_reused", 1);
        }
        audit!(
            warn,
            "refresh_reused",
            client,
            user_id = user_id.as_str(),
            session_id = session_id
        );
        metrics::counter!("tessera_refreshes_total", "outcome" => "reused").increment(1);
        Ok(Denied::RefreshReused)
    }

    /// Ends the session of a refresh or access token (RFC 7009). Whatever
    /// the token was, the answer is the same, so revocation reveals nothing.
    pub async fn revoke(
        &self,
        token: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<()> {
        let Some(s) = self.session_of(token, now).await? else {
            return Ok(());
        };
        let revoked = self
            .accounts
            .stores
            .sessions
            .revoke_session(&s.user_id, &s.id, now)
            .await?;
        if revoked {
            super::sessions_ended("token_revoked", 1);
            audit!(
                info,
                "token_revoked",
                client,
                user_id = s.user_id.as_str(),
                session_id = s.id.as_str()
            );
        }
        Ok(())
    }

    /// The session a refresh or access token belongs to, if it is one of ours.
    async fn session_of(&self, token: &str, now: OffsetDateTime) -> Outcome<Option<SessionRecord>> {
        let stores = &self.accounts.stores;
        if let Some(refresh) = RefreshToken::parse(token) {
            let Some(record) = stores.refresh.refresh_by_hash(&refresh.hash()).await? else {
                return Ok(None);
            };
            return Ok(stores.sessions.session_by_id(&record.session_id).await?);
        }
        // An access token must verify; an expired one may still name its
        // session (revoking it then is harmless and idempotent), so the time
        // checks are relaxed to the longest a session can live.
        let mut lax = self.settings.rules.clone();
        lax.leeway = self.settings.refresh_ttl.max(self.settings.session_ttl);
        let claims = match self.keys.verify(&lax, token, now).await {
            Ok(v) => v.claims,
            Err(_) => return Ok(None),
        };
        Ok(stores
            .sessions
            .session_by_id(&claims.sid)
            .await?
            .filter(|s| s.user_id == claims.sub))
    }

    fn new_session(&self, user_id: &str, client: ClientInfo, now: OffsetDateTime) -> SessionRecord {
        SessionRecord {
            id: ids::session_id(&mut OsRng),
            secret_hash: None,
            user_id: user_id.to_owned(),
            kind: SessionKind::Token,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.settings.refresh_ttl,
            idle_expires_at: None,
            user_agent: client.user_agent.map(|ua| {
                ua.chars()
                    .take(tessera_core::session::MAX_USER_AGENT_CHARS)
                    .collect()
            }),
            ip: client.ip,
            revoked_at: None,
        }
    }

    /// Signs a fresh access token for `session` and counts the issue.
    fn grant(
        &self,
        user_id: String,
        username: String,
        session: SessionRecord,
        refresh_token: RefreshToken,
        delivery: Delivery,
        now: OffsetDateTime,
    ) -> Outcome<TokenGrant> {
        let rules = &self.settings.rules;
        let claims = rules.claims(
            &user_id,
            &username,
            &session.id,
            session.expires_at,
            now,
            &mut OsRng,
        );
        let access_token = self
            .keys
            .ring()
            .sign(&claims)
            .map_err(|e| Denied::Internal(format!("signing an access token failed: {e}")))?;
        // The lifetime as configured (or what is left of the session), not
        // `exp - now`, which the rounding of `exp` to whole seconds would blur.
        let expires_in = rules
            .access_ttl
            .min(session.expires_at - now)
            .whole_seconds()
            .max(0);
        let refresh_expires_in = (session.expires_at - now).whole_seconds().max(0);
        metrics::counter!("tessera_tokens_issued_total", "delivery" => delivery.label())
            .increment(1);
        Ok(TokenGrant {
            user_id,
            username,
            session,
            access_token,
            expires_in,
            refresh_token,
            refresh_expires_in,
        })
    }
}
