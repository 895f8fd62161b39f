//! Every operation that changes state, each written once.
//!
//! Authentication has one home, `auth::authenticate`. This module is the
//! other pipeline, the one that writes:
//!
//! ```text
//! JSON handler ─┐
//! forward-auth ─┼─► operation (Accounts / Tokens) ─► stores
//! CLI command  ─┘      logs, counts, returns a typed result or a Denied
//! ```
//!
//! An operation takes plain inputs (who, what, the client's address and user
//! agent, the time) and returns a typed result or a typed [`Denied`]; it
//! knows nothing of HTTP, cookies or JSON. Its log line and its metrics are
//! written here, once, whoever called it. Handlers and CLI commands only
//! translate: `.ci/run` fails when one of them calls a store's write method
//! itself.
//!
//! - [`Accounts`] (this file and `login.rs`): register, log in with a cookie
//!   session, end a session, end every other session, change the password,
//!   remove a user, rotate the signing keys.
//! - [`Tokens`] (`tokens.rs`): log in for tokens, refresh, revoke a token.

mod audit;
mod login;
mod tokens;

use std::sync::Arc;

use rand_core::OsRng;
use tessera_core::password::{HashCost, HashError};
use tessera_core::session::ClientInfo;
use tessera_core::throttle::{ThrottlePolicy, retry_after_seconds, tag};
use tessera_core::{Password, SessionPolicy, SessionRecord, SessionSecret, Username, ids};
use tessera_store::{StoreError, StoredKey, UserRecord};
use time::OffsetDateTime;

use self::audit::audit;
use crate::app::Stores;
use crate::keys::Keys;
use crate::passwords::Passwords;
use crate::settings::Settings;

pub use tokens::{Delivery, TokenGrant, TokenSettings, Tokens};

/// Why an operation refused. Each becomes one status and error code in
/// `error.rs`, and a message on the command line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// Wrong username or password (the same for an unknown user).
    #[error("the username or password is incorrect")]
    InvalidCredentials,
    /// Too many recent failures; wait this many seconds.
    #[error("too many failed attempts; try again in {retry_after} s")]
    Throttled {
        /// Whole seconds to wait.
        retry_after: u64,
    },
    /// Registration is switched off.
    #[error("registration is closed on this server")]
    RegistrationClosed,
    /// Someone has that username already (in any case).
    #[error("the username {0} is already taken")]
    UsernameTaken(String),
    /// The input breaks a rule (a username or password that cannot be).
    #[error("{0}")]
    Invalid(String),
    /// No such thing of the caller's (`"session"`, `"user"`).
    #[error("there is no such {0}")]
    NotFound(&'static str),
    /// The authenticated user no longer exists.
    #[error("the user no longer exists")]
    UserGone,
    /// A token that is malformed, unknown, expired or revoked.
    #[error("the token is invalid, expired or revoked")]
    InvalidToken,
    /// A spent refresh token was presented again: its session is revoked.
    #[error("this refresh token was already used; its whole session has been revoked")]
    RefreshReused,
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not fail did (hashing, signing); the detail is
    /// for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Denied {
    /// The outcome label of this refusal in metrics (the API error code).
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::Throttled { .. } => "too_many_attempts",
            Self::RegistrationClosed => "registration_closed",
            Self::UsernameTaken(_) => "username_taken",
            Self::Invalid(_) => "invalid_request",
            Self::NotFound(_) => "not_found",
            Self::UserGone => "unauthenticated",
            Self::InvalidToken => "invalid_token",
            Self::RefreshReused => "refresh_token_reused",
            Self::Store(StoreError::Unavailable(_)) => "unavailable",
            Self::Store(_) | Self::Internal(_) => "internal_error",
        }
    }
}

/// The result of an operation.
pub type Outcome<T> = Result<T, Denied>;

/// Who is registering an account: the public (refused when registration is
/// closed) or an operator at the command line (always allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registrar {
    /// `POST /v1/users`.
    Public,
    /// `tessera user add`.
    Operator,
}

/// What an operator does to an account it keeps (`tessera user
/// disable|enable|logout`, `POST /v1/admin/users/{username}/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    /// Refuse their logins and end their sessions.
    Disable,
    /// Let them log in again.
    Enable,
    /// End their sessions.
    Logout,
}

/// Why a session ends, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The session's own logout (`DELETE /v1/sessions/current`).
    Logout,
    /// Ended from the device list (`DELETE /v1/sessions/{id}`).
    Revoked,
}

/// A login attempt: the name and password typed, from where, and from which
/// device.
pub struct Attempt<'a> {
    /// The username as typed (any case).
    pub username: &'a str,
    /// The password as typed.
    pub password: &'a str,
    /// The client's address and user agent.
    pub client: ClientInfo,
    /// The id of a device this account has seen log in: a device cookie the
    /// server recognised for this username (`tessera_core::device`). Its
    /// failures are counted on their own, and it never waits at the
    /// account's gate.
    pub device: Option<String>,
}

impl Ending {
    /// The `reason` label of `tessera_sessions_ended_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Revoked => "revoked",
        }
    }
}

/// Counts `n` sessions (of either kind) ended for `reason`.
pub(crate) fn sessions_ended(reason: &'static str, n: usize) {
    metrics::counter!("tessera_sessions_ended_total", "reason" => reason).increment(n as u64);
}

/// A new cookie session: the secret goes to the browser and nowhere else.
pub struct SessionLogin {
    /// Who logged in.
    pub user: UserRecord,
    /// The session as stored.
    pub session: SessionRecord,
    /// The secret for the cookie (only its hash is stored).
    pub secret: SessionSecret,
}

/// A password change: who asks, from which session (which stays), and the
/// two passwords.
pub struct PasswordChange<'a> {
    /// The authenticated user.
    pub user_id: &'a str,
    /// The session the change comes from; every other one ends.
    pub keep_session: &'a str,
    /// The user's name and the password now, checked (and throttled) like a
    /// login.
    pub current: Attempt<'a>,
    /// The password to be.
    pub new: &'a str,
}

/// The settings the operations follow.
#[derive(Debug, Clone, Copy)]
pub struct AccountRules {
    /// Lifetimes of cookie sessions.
    pub policy: SessionPolicy,
    /// Whether `POST /v1/users` is open.
    pub registration_open: bool,
}

/// The operations on accounts and sessions, over the stores.
#[derive(Clone)]
pub struct Accounts {
    stores: Stores,
    passwords: Arc<Passwords>,
    rules: AccountRules,
    turns: Arc<login::Turns>,
}

fn invalid(e: impl std::fmt::Display) -> Denied {
    Denied::Invalid(e.to_string())
}

impl Accounts {
    /// The operations over `stores`, hashing with `passwords`.
    pub fn new(stores: Stores, passwords: Arc<Passwords>, rules: AccountRules) -> Self {
        Self {
            stores,
            passwords,
            rules,
            turns: Arc::default(),
        }
    }

    /// The operations over `stores` as `settings` say, hashing up to
    /// `hashing` passwords at once (the server: one per core; a command: one).
    pub fn for_settings(
        stores: Stores,
        settings: &Settings,
        hashing: usize,
    ) -> Result<Self, HashError> {
        let passwords = Arc::new(Passwords::new(HashCost::OWASP, hashing)?);
        let rules = AccountRules {
            policy: SessionPolicy {
                idle: settings.session_idle,
                absolute: settings.session_ttl,
            },
            registration_open: settings.registration_open,
        };
        Ok(Self::new(stores, passwords, rules))
    }

    /// The rules the operations follow.
    pub fn rules(&self) -> &AccountRules {
        &self.rules
    }

    /// Registers an account.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        by: Registrar,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<UserRecord> {
        if by == Registrar::Public {
            if !self.rules.registration_open {
                return Err(Denied::RegistrationClosed);
            }
            self.count_registration(client, now).await?;
        }
        let username = Username::parse(username).map_err(invalid)?;
        let password = self.new_password(password, username.as_str())?;
        let taken = || Denied::UsernameTaken(username.as_str().to_owned());
        // A cheap early answer; the store's uniqueness rule still decides races.
        if self
            .stores
            .users
            .user_by_username(username.as_str())
            .await?
            .is_some()
        {
            return Err(taken());
        }
        let user = UserRecord {
            id: ids::user_id(&mut OsRng),
            username: username.as_str().to_owned(),
            password_hash: self.hash(password).await?,
            created_at: now,
            disabled_at: None,
        };
        match self.stores.users.create_user(&user).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(taken()),
            Err(e) => return Err(e.into()),
        }
        audit!(info, "user_registered", client, user_id = user.id.as_str());
        metrics::counter!("tessera_registrations_total").increment(1);
        Ok(user)
    }

    /// Counts a public registration attempt against the client's address,
    /// atomically and before any work: an address past the limit gets
    /// [`Denied::Throttled`], whether its attempts succeeded or not (each
    /// costs a password hash or tells whether a name is taken).
    async fn count_registration(&self, client: &ClientInfo, now: OffsetDateTime) -> Outcome<()> {
        let Some(ip) = client.ip.as_deref() else {
            return Ok(());
        };
        let policy = ThrottlePolicy::REGISTRATIONS_PER_ADDRESS;
        let key = format!("reg:{}", tag(&["registration", &login::network_of(ip)]));
        match self.count(&key, policy, now).await? {
            Ok(()) => Ok(()),
            Err(wait) => {
                let retry_after = retry_after_seconds(wait);
                metrics::counter!("tessera_throttled_attempts_total", "limit" => "registration")
                    .increment(1);
                audit!(
                    info,
                    "registration_throttled",
                    client,
                    retry_after = retry_after
                );
                Err(Denied::Throttled { retry_after })
            }
        }
    }

    /// Checks the password and starts a cookie session with a fresh secret
    /// (never one the client proposed: no fixation).
    pub async fn log_in(&self, attempt: Attempt<'_>, now: OffsetDateTime) -> Outcome<SessionLogin> {
        let user = self.check_password("session", &attempt, now).await?;
        let client = attempt.client;
        let secret = SessionSecret::generate(&mut OsRng);
        let session = self.rules.policy.new_cookie_session(
            ids::session_id(&mut OsRng),
            secret.hash(),
            user.id.clone(),
            client,
            now,
        );
        self.stores.sessions.create_session(&session).await?;
        self.confirm_session(&user, &session, now).await?;
        audit!(
            info,
            "login_succeeded",
            session,
            method = "session",
            user_id = user.id.as_str(),
            session_id = session.id.as_str(),
        );
        Ok(SessionLogin {
            user,
            session,
            secret,
        })
    }

    /// Ends one of `user_id`'s sessions, of either kind. Another user's
    /// session, or one already ended, is [`Denied::NotFound`], exactly like an
    /// unknown id.
    pub async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        why: Ending,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<()> {
        // Not even the shape of an id: no store is asked (nor sees a NUL byte).
        if !ids::is_id("ses", session_id) {
            return Err(Denied::NotFound("session"));
        }
        let done = self
            .stores
            .sessions
            .revoke_session(user_id, session_id, now)
            .await?;
        if !done {
            return Err(Denied::NotFound("session"));
        }
        sessions_ended(why.label(), 1);
        match why {
            Ending::Logout => audit!(
                info,
                "logout",
                client,
                user_id = user_id,
                session_id = session_id
            ),
            Ending::Revoked => audit!(
                info,
                "session_revoked",
                client,
                user_id = user_id,
                session_id = session_id
            ),
        }
        Ok(())
    }

    /// Ends every session of `user_id` except `keep`. Returns how many ended.
    pub async fn end_other_sessions(
        &self,
        user_id: &str,
        keep: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<usize> {
        let revoked = self
            .stores
            .sessions
            .revoke_user_sessions(user_id, Some(keep), now)
            .await?;
        sessions_ended("others_revoked", revoked.len());
        audit!(
            info,
            "other_sessions_revoked",
            client,
            user_id = user_id,
            kept_session_id = keep,
            revoked = revoked.len()
        );
        Ok(revoked.len())
    }

    /// Changes the password and ends every other session of the user, of
    /// either kind.
    pub async fn change_password(
        &self,
        change: PasswordChange<'_>,
        now: OffsetDateTime,
    ) -> Outcome<()> {
        let new_password = self.new_password(change.new, change.current.username)?;
        let user = self
            .check_password("password_change", &change.current, now)
            .await?;
        if user.id != change.user_id {
            // The name now belongs to someone else: cannot happen without deletion.
            return Err(Denied::UserGone);
        }
        let hash = self.hash(new_password).await?;
        // The hash first, then the sessions: a login that verified the old
        // password and stores its session in between is caught by
        // `confirm_session`.
        self.stores.users.set_password_hash(&user.id, &hash).await?;
        let revoked = self
            .stores
            .sessions
            .revoke_user_sessions(&user.id, Some(change.keep_session), now)
            .await?;
        sessions_ended("password_change", revoked.len());
        audit!(
            info,
            "password_changed",
            change.current.client,
            user_id = user.id.as_str(),
            revoked = revoked.len()
        );
        Ok(())
    }

    /// The user named `username` (any case), or [`Denied::NotFound`].
    async fn user_named(&self, username: &str) -> Outcome<UserRecord> {
        if Username::parse(username).is_err() {
            return Err(Denied::NotFound("user"));
        }
        self.stores
            .users
            .user_by_username(username)
            .await?
            .ok_or(Denied::NotFound("user"))
    }

    /// Removes the user named `username` (in any case) and ends every session
    /// of theirs first, so that a failure half-way leaves nothing usable.
    /// Returns the user removed and how many sessions ended.
    pub async fn remove_user(
        &self,
        username: &str,
        by: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<(UserRecord, usize)> {
        let user = self.user_named(username).await?;
        let ended = self
            .end_every_session(&user.id, "user_deleted", now)
            .await?;
        self.stores.users.delete_user(&user.id).await?;
        audit!(
            info,
            "user_deleted",
            by,
            user_id = user.id.as_str(),
            revoked = ended
        );
        Ok((user, ended))
    }

    /// Disables, enables or logs out the user named `username` (any case),
    /// keeping the account, and returns the user as it is now and how many
    /// sessions ended.
    ///
    /// Disabling ends every session of theirs, of either kind, so their
    /// cookies, token families and access tokens stop at once; until enabled
    /// again, a login gets the same refusal as a wrong password. The flag is
    /// set before the sessions end, so a login racing the change is caught by
    /// [`Accounts::confirm_session`].
    pub async fn change_user(
        &self,
        username: &str,
        change: UserChange,
        by: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<(UserRecord, usize)> {
        let mut user = self.user_named(username).await?;
        let user_id = user.id.clone();
        let ended = match change {
            UserChange::Enable => {
                self.stores.users.set_disabled(&user_id, None).await?;
                user.disabled_at = None;
                audit!(info, "user_enabled", by, user_id = user_id.as_str());
                0
            }
            UserChange::Disable => {
                self.stores.users.set_disabled(&user_id, Some(now)).await?;
                user.disabled_at = Some(now);
                let ended = self
                    .end_every_session(&user_id, "user_disabled", now)
                    .await?;
                audit!(
                    info,
                    "user_disabled",
                    by,
                    user_id = user_id.as_str(),
                    revoked = ended
                );
                ended
            }
            UserChange::Logout => {
                let ended = self.end_every_session(&user_id, "user_logout", now).await?;
                audit!(
                    info,
                    "user_logged_out",
                    by,
                    user_id = user_id.as_str(),
                    revoked = ended
                );
                ended
            }
        };
        Ok((user, ended))
    }

    /// Ends every session of `user_id`, of either kind, counting them under
    /// `reason`; returns how many ended.
    async fn end_every_session(
        &self,
        user_id: &str,
        reason: &'static str,
        now: OffsetDateTime,
    ) -> Outcome<usize> {
        let revoked = self
            .stores
            .sessions
            .revoke_user_sessions(user_id, None, now)
            .await?;
        sessions_ended(reason, revoked.len());
        Ok(revoked.len())
    }

    /// Makes a new key of `keys`' algorithm, sealed under their master key,
    /// the current one; the previous key stays published (running servers
    /// decide until when).
    pub async fn rotate_keys(
        &self,
        keys: &Keys,
        by: &ClientInfo,
        now: OffsetDateTime,
    ) -> Outcome<StoredKey> {
        let key = keys
            .new_key(now)
            .map_err(|e| Denied::Internal(format!("making a key: {e}")))?;
        self.stores.keys.rotate_key(&key).await?;
        metrics::counter!("tessera_key_rotations_total").increment(1);
        audit!(
            info,
            "keys_rotated",
            by,
            kid = key.kid.as_str(),
            alg = key.alg.as_str()
        );
        Ok(key)
    }

    /// `raw` as a new password for `username`: long enough, and not one an
    /// attacker tries first (see `tessera_core::account::Password::parse_new`).
    fn new_password(&self, raw: &str, username: &str) -> Outcome<Password> {
        Password::parse_new(raw, &[username]).map_err(invalid)
    }

    async fn hash(&self, password: Password) -> Outcome<String> {
        self.passwords
            .hash(password)
            .await
            .map_err(|e| Denied::Internal(format!("password hashing failed: {e}")))
    }
}
