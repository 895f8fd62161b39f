//! The authentication pipeline: extract a credential, decide, hand handlers a
//! [`Principal`].
//!
//! ```text
//! request ─► credential() ─► authenticate() ─► Principal ─► handler
//! ```
//!
//! Handlers never look at cookies or `Authorization` themselves; they take
//! [`Authenticated`] (any method) or [`CookieSession`] (the session cookie
//! only) as an extractor. Credentials are read only from the cookie and the
//! `Authorization` header, never from the URL. When both are present the
//! bearer token wins, as API.md says. Cookie-authenticated requests with an
//! unsafe method must carry the session's CSRF token; bearer requests need none.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use tessera_core::{Refusal, SessionRecord, SessionSecret, csrf};
use tessera_store::StoreError;
use time::OffsetDateTime;

use crate::app::{App, AppState};
use crate::cookies;
use crate::error::ApiError;

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The session cookie.
    Session,
    /// `Authorization: Bearer <access token>`.
    Bearer,
}

impl AuthMethod {
    /// The name API.md uses in `auth.method` and `X-Auth-Method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Bearer => "bearer",
        }
    }
}

/// A credential as found in a request, not yet checked.
pub enum Credential {
    /// The value of the session cookie.
    SessionCookie(String),
    /// The token after `Bearer `.
    Bearer(String),
}

impl Credential {
    fn method(&self) -> AuthMethod {
        match self {
            Self::SessionCookie(_) => AuthMethod::Session,
            Self::Bearer(_) => AuthMethod::Bearer,
        }
    }
}

/// Who is making the request, as decided by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Principal {
    /// User id.
    pub user_id: String,
    /// Username as registered.
    pub username: String,
    /// How the request authenticated.
    pub method: AuthMethod,
    /// The session the credential belongs to.
    pub session: SessionRecord,
    /// The session secret, for cookie sessions (to check the CSRF token).
    secret: Option<SessionSecret>,
}

impl Principal {
    /// The CSRF token of a cookie session.
    pub fn csrf_token(&self) -> Option<String> {
        self.secret.as_ref().map(csrf::token_for)
    }
}

/// Why authentication did not produce a principal.
pub enum AuthFailure {
    /// The credential was refused, for this reason.
    Refused(AuthMethod, Refusal),
    /// A store failed.
    Store(StoreError),
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Refused(AuthMethod::Bearer, _) => ApiError::invalid_token(),
            AuthFailure::Refused(_, _) => ApiError::unauthenticated(),
            AuthFailure::Store(e) => e.into(),
        }
    }
}

/// The credential a request carries: a bearer token if there is one, else the session cookie.
pub fn credential(headers: &HeaderMap, app: &App) -> Option<Credential> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let value = auth.to_str().unwrap_or("");
        let token = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => "",
        };
        return Some(Credential::Bearer(token.to_owned()));
    }
    session_cookie(headers, app).map(Credential::SessionCookie)
}

fn session_cookie(headers: &HeaderMap, app: &App) -> Option<String> {
    let mut values = cookies::find(headers, app.cookies.session_name());
    // If several cookies share the name, prefer one that has our format.
    let first = values.next()?;
    if SessionSecret::parse(first).is_some() {
        return Some(first.to_owned());
    }
    Some(
        values
            .find(|v| SessionSecret::parse(v).is_some())
            .unwrap_or(first)
            .to_owned(),
    )
}

/// Decides whether `cred` authenticates a request at `now`.
pub async fn authenticate(
    app: &App,
    cred: Credential,
    now: OffsetDateTime,
) -> Result<Principal, AuthFailure> {
    let method = cred.method();
    let result = match cred {
        Credential::SessionCookie(raw) => authenticate_session(app, &raw, now).await,
        // Access tokens arrive with the token issue; until then no bearer
        // token is one this server issued.
        Credential::Bearer(_) => Err(AuthFailure::Refused(AuthMethod::Bearer, Refusal::Malformed)),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(AuthFailure::Refused(_, r)) => r.label(),
        Err(AuthFailure::Store(_)) => "store_error",
    };
    metrics::counter!("tessera_authentications_total", "method" => method.as_str(), "outcome" => outcome)
        .increment(1);
    result
}

async fn authenticate_session(
    app: &App,
    raw: &str,
    now: OffsetDateTime,
) -> Result<Principal, AuthFailure> {
    let refused = |r| AuthFailure::Refused(AuthMethod::Session, r);
    let secret = SessionSecret::parse(raw).ok_or(refused(Refusal::Malformed))?;
    let mut session = app
        .stores
        .sessions
        .session_by_secret(&secret.hash())
        .await
        .map_err(AuthFailure::Store)?
        .ok_or(refused(Refusal::Unknown))?;
    session.check(now).map_err(refused)?;
    let user = app
        .stores
        .users
        .user_by_id(&session.user_id)
        .await
        .map_err(AuthFailure::Store)?
        .ok_or(refused(Refusal::UserGone))?;
    if let Some((seen, idle)) = app.policy.touch(&session, now) {
        app.stores
            .sessions
            .touch_session(&session.id, seen, idle)
            .await
            .map_err(AuthFailure::Store)?;
        session.last_seen_at = seen;
        session.idle_expires_at = Some(idle);
    }
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        method: AuthMethod::Session,
        session,
        secret: Some(secret),
    })
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Checks the `X-CSRF-Token` header of an unsafe cookie-authenticated request.
fn check_csrf(parts: &Parts, principal: &Principal) -> Result<(), ApiError> {
    let Some(secret) = &principal.secret else {
        return Ok(());
    };
    if !is_unsafe(&parts.method) {
        return Ok(());
    }
    let presented = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if csrf::verify(secret, presented) {
        Ok(())
    } else {
        metrics::counter!("tessera_csrf_failures_total").increment(1);
        Err(ApiError::csrf_failed())
    }
}

/// An authenticated request, by any method (bearer preferred), with the CSRF
/// check applied to cookie sessions.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let cred = credential(&parts.headers, app).ok_or_else(ApiError::unauthenticated)?;
        let principal = authenticate(app, cred, crate::handlers::now()).await?;
        check_csrf(parts, &principal)?;
        Ok(Self(principal))
    }
}

/// A request authenticated by the session cookie alone (the
/// `/v1/sessions/current` routes), with the CSRF check on unsafe methods.
pub struct CookieSession(pub Principal);

impl FromRequestParts<AppState> for CookieSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let raw = session_cookie(&parts.headers, app).ok_or_else(ApiError::unauthenticated)?;
        let principal =
            authenticate(app, Credential::SessionCookie(raw), crate::handlers::now()).await?;
        check_csrf(parts, &principal)?;
        Ok(Self(principal))
    }
}
