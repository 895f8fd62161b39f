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
//! `Authorization` header, never from the URL. A bearer token wins over any
//! cookie, as `docs/api.md` says; the session cookie wins over the access-token
//! cookie. Cookie-session requests with an unsafe method must carry the
//! session's CSRF token; bearer requests need none, and access-token cookies
//! are `SameSite=Strict` and reach only JSON routes.
//!
//! Sessions and tokens differ only inside [`authenticate`]: a session secret
//! is hashed and looked up; an access token is verified against the key ring
//! (once — see [`crate::token_cache`]), then its session (`sid`) is looked up
//! on every request, so revocation takes effect at once on this server.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use tessera_core::jwt::{AccessClaims, check_claims};
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
    /// The access token in the access-token cookie.
    CookieToken,
}

impl AuthMethod {
    /// The name `docs/api.md` uses in `auth.method` and `X-Auth-Method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Bearer => "bearer",
            Self::CookieToken => "cookie_token",
        }
    }
}

/// A credential as found in a request, not yet checked.
pub enum Credential {
    /// The value of the session cookie.
    SessionCookie(String),
    /// The token after `Bearer `.
    Bearer(String),
    /// The value of the access-token cookie.
    AccessCookie(String),
}

impl Credential {
    fn method(&self) -> AuthMethod {
        match self {
            Self::SessionCookie(_) => AuthMethod::Session,
            Self::Bearer(_) => AuthMethod::Bearer,
            Self::AccessCookie(_) => AuthMethod::CookieToken,
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
    /// When the credential stops working: the token's `exp`, or the
    /// session's earlier expiry.
    pub expires_at: OffsetDateTime,
    /// The verified claims, for token methods.
    pub claims: Option<AccessClaims>,
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
    /// A cookie-session request with an unsafe method lacked the CSRF token.
    Csrf,
    /// A store failed.
    Store(StoreError),
}

impl From<StoreError> for AuthFailure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Refused(AuthMethod::Session, _) => ApiError::unauthenticated(),
            AuthFailure::Refused(_, _) => ApiError::bad_bearer(),
            AuthFailure::Csrf => ApiError::csrf_failed(),
            AuthFailure::Store(e) => e.into(),
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::AUTHORIZATION).iter().find_map(|v| {
        let (scheme, rest) = v.to_str().ok()?.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_owned())
    })
}

/// The credential a request carries: a bearer token if there is one, else the
/// session cookie, else the access-token cookie. Other `Authorization`
/// schemes are not credentials here and are ignored.
pub fn credential(headers: &HeaderMap, app: &App) -> Option<Credential> {
    if let Some(token) = bearer_token(headers) {
        return Some(Credential::Bearer(token));
    }
    if let Some(secret) = session_cookie(headers, app) {
        return Some(Credential::SessionCookie(secret));
    }
    cookies::find(headers, app.cookies.access_name())
        .next()
        .map(|t| Credential::AccessCookie(t.to_owned()))
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
    parts: &Parts,
    now: OffsetDateTime,
) -> Result<Principal, AuthFailure> {
    decide(app, cred, parts, None, now).await
}

/// [`authenticate`] for the account pages' HTML forms
/// (`crate::pages`): the credential comes from the cookies only (a page
/// never sends `Authorization`), and an unsafe cookie-session request may
/// carry its CSRF token in the form's `csrf_token` field instead of the
/// `X-CSRF-Token` header, because a form without script cannot set a
/// header. Only the page handlers call this, after decoding an
/// `application/x-www-form-urlencoded` body: the JSON routes never accept
/// a token from a body.
pub async fn authenticate_page(
    app: &App,
    parts: &Parts,
    form_token: Option<&str>,
    now: OffsetDateTime,
) -> Result<Principal, AuthFailure> {
    let cred = match session_cookie(&parts.headers, app) {
        Some(secret) => Credential::SessionCookie(secret),
        None => match cookies::find(&parts.headers, app.cookies.access_name()).next() {
            Some(token) => Credential::AccessCookie(token.to_owned()),
            None => return Err(AuthFailure::Refused(AuthMethod::Session, Refusal::Missing)),
        },
    };
    decide(app, cred, parts, form_token, now).await
}

async fn decide(
    app: &App,
    cred: Credential,
    parts: &Parts,
    form_token: Option<&str>,
    now: OffsetDateTime,
) -> Result<Principal, AuthFailure> {
    let method = cred.method();
    let result = match cred {
        Credential::SessionCookie(raw) => {
            authenticate_session(app, &raw, parts, form_token, now).await
        }
        Credential::Bearer(token) | Credential::AccessCookie(token) => {
            authenticate_token(app, &token, method, now).await
        }
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(AuthFailure::Refused(_, r)) => r.label(),
        Err(AuthFailure::Store(_)) => "store_error",
        Err(AuthFailure::Csrf) => "csrf_failed",
    };
    if let Err(AuthFailure::Refused(_, r)) = &result {
        tracing::info!(
            method = method.as_str(),
            reason = r.label(),
            "credential refused"
        );
    }
    metrics::counter!("tessera_authentications_total", "method" => method.as_str(), "outcome" => outcome)
        .increment(1);
    result
}

async fn authenticate_session(
    app: &App,
    raw: &str,
    parts: &Parts,
    form_token: Option<&str>,
    now: OffsetDateTime,
) -> Result<Principal, AuthFailure> {
    let refused = |r| AuthFailure::Refused(AuthMethod::Session, r);
    let secret = SessionSecret::parse(raw).ok_or(refused(Refusal::Malformed))?;
    let mut session = app
        .stores
        .sessions
        .session_by_secret(&secret.hash())
        .await?
        .ok_or(refused(Refusal::Unknown))?;
    session.check(now).map_err(refused)?;
    let user = app
        .stores
        .users
        .user_by_id(&session.user_id)
        .await?
        .ok_or(refused(Refusal::UserGone))?;
    if user.disabled_at.is_some() {
        return Err(refused(Refusal::UserDisabled));
    }
    // A request that fails the CSRF check must not keep the session alive:
    // check before recording the use.
    check_csrf(parts, &secret, form_token)?;
    if let Some((seen, idle)) = app.policy.touch(&session, now) {
        app.stores
            .sessions
            .touch_session(&session.id, seen, Some(idle))
            .await?;
        session.last_seen_at = seen;
        session.idle_expires_at = Some(idle);
    }
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        method: AuthMethod::Session,
        expires_at: session.effective_expiry(),
        session,
        claims: None,
        secret: Some(secret),
    })
}

/// A verified access token with its live session and current user.
pub struct CheckedToken {
    /// The verified claims.
    pub claims: AccessClaims,
    /// The session (`sid`), not revoked.
    pub session: SessionRecord,
    /// The user (`sub`), still existing.
    pub user: tessera_store::UserRecord,
}

/// Verifies an access token: the signature (once, then from the cache), the
/// claims, then on every request its session and its user. `method` only
/// labels the refusal.
pub async fn check_access_token(
    app: &App,
    token: &str,
    method: AuthMethod,
    now: OffsetDateTime,
) -> Result<CheckedToken, AuthFailure> {
    let refused = |r| AuthFailure::Refused(method, r);
    let ring = app.keys.ring();
    let verified = match app.verified.get(token) {
        Some(v) if ring.knows(&v.kid) => {
            check_claims(&app.rules, &v.claims, now).map_err(refused)?;
            metrics::counter!("tessera_token_verifications_total", "outcome" => "cached")
                .increment(1);
            v
        }
        _ => {
            let v = app.keys.verify(&app.rules, token, now).await.map_err(|r| {
                metrics::counter!("tessera_token_verifications_total", "outcome" => r.label())
                    .increment(1);
                refused(r)
            })?;
            metrics::counter!("tessera_token_verifications_total", "outcome" => "verified")
                .increment(1);
            app.verified.insert(token, v.clone());
            v
        }
    };
    let claims = verified.claims;
    let session = app
        .stores
        .sessions
        .session_by_id(&claims.sid)
        .await?
        .ok_or(refused(Refusal::Unknown))?;
    if session.user_id != claims.sub {
        return Err(refused(Refusal::Malformed));
    }
    // A token session has no idle timeout, and its end caps every `exp`:
    // only revocation remains to check (the revocation list is the sessions'
    // `revoked_at`, kept until the last access token would have expired).
    if session.revoked_at.is_some() {
        return Err(refused(Refusal::Revoked));
    }
    let user = app
        .stores
        .users
        .user_by_id(&claims.sub)
        .await?
        .ok_or(refused(Refusal::UserGone))?;
    if user.disabled_at.is_some() {
        return Err(refused(Refusal::UserDisabled));
    }
    Ok(CheckedToken {
        claims,
        session,
        user,
    })
}

async fn authenticate_token(
    app: &App,
    token: &str,
    method: AuthMethod,
    now: OffsetDateTime,
) -> Result<Principal, AuthFailure> {
    let CheckedToken {
        claims,
        session,
        user,
    } = check_access_token(app, token, method, now).await?;
    let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap_or(session.expires_at);
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        method,
        session,
        expires_at,
        claims: Some(claims),
        secret: None,
    })
}

/// Checks the `X-CSRF-Token` header of an unsafe cookie-session request,
/// or, for a page's form ([`authenticate_page`]) without that header, the
/// form's `csrf_token` field. For forward-auth the rule applies to the
/// original request's method (see [`crate::origin::judged_method`]).
fn check_csrf(
    parts: &Parts,
    secret: &SessionSecret,
    form_token: Option<&str>,
) -> Result<(), AuthFailure> {
    if !crate::origin::judged_unsafe(&parts.method, parts.uri.path(), &parts.headers) {
        return Ok(());
    }
    let presented = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(form_token)
        .unwrap_or("");
    if csrf::verify(secret, presented) {
        Ok(())
    } else {
        metrics::counter!("tessera_csrf_failures_total").increment(1);
        Err(AuthFailure::Csrf)
    }
}

/// An authenticated request, by any method (bearer preferred), with the CSRF
/// check applied to cookie sessions.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let cred = credential(&parts.headers, app).ok_or_else(ApiError::unauthenticated)?;
        let principal = authenticate(app, cred, parts, crate::handlers::now()).await?;
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
        let principal = authenticate(
            app,
            Credential::SessionCookie(raw),
            parts,
            crate::handlers::now(),
        )
        .await?;
        Ok(Self(principal))
    }
}
