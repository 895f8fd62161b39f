//! Session-based authentication: login, the current session, logout and the
//! device list.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_core::session::ClientInfo;
use tessera_core::{SessionKind, SessionRecord, csrf};
use utoipa::ToSchema;

use super::{now, rfc3339};
use crate::accounts::{Attempt, Ending, SessionLogin};
use crate::app::{App, AppState};
use crate::auth::{Authenticated, CookieSession, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Client, JsonBody};

/// Login body of `POST /v1/sessions` and `POST /v1/tokens`.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    /// The username, in any case.
    pub username: String,
    /// The password.
    pub password: String,
    /// Keep the session cookie after the browser closes (`Max-Age`); by
    /// default it is a browser-session cookie.
    #[serde(default)]
    pub remember: bool,
}

impl Credentials {
    /// The login attempt these credentials make from `client`, with the
    /// device its cookie proves, if any.
    pub fn attempt<'a>(
        &'a self,
        app: &App,
        headers: &HeaderMap,
        client: ClientInfo,
    ) -> Attempt<'a> {
        Attempt {
            username: &self.username,
            password: &self.password,
            client,
            device: app.known_device(headers, &self.username),
        }
    }
}

/// A user, by id and name.
#[derive(Serialize, ToSchema)]
pub struct UserRef {
    /// `usr_…`.
    pub id: String,
    /// As given at registration.
    pub username: String,
}

impl UserRef {
    fn of(p: &Principal) -> Self {
        Self {
            id: p.user_id.clone(),
            username: p.username.clone(),
        }
    }
}

/// A cookie session as the server keeps it.
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionInfo {
    /// `ses_…`: public, not the secret.
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    /// The absolute end: `--session-ttl` after login.
    pub expires_at: String,
    /// The idle end, moved forward as the session is used.
    pub idle_expires_at: Option<String>,
}

impl SessionInfo {
    fn of(s: &SessionRecord) -> Self {
        Self {
            id: s.id.clone(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            idle_expires_at: s.idle_expires_at.map(rfc3339),
        }
    }
}

/// A cookie session and its CSRF token: the answer of `POST /v1/sessions`
/// and `GET /v1/sessions/current`.
#[derive(Serialize, ToSchema)]
pub struct SessionState {
    /// Whose session it is.
    pub user: UserRef,
    /// The session.
    pub session: SessionInfo,
    /// Send it in `X-CSRF-Token` with every unsafe request by cookie.
    pub csrf_token: Option<String>,
}

/// What kind of login made a session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A session login (`POST /v1/sessions`).
    Cookie,
    /// A token login: its refresh-token family.
    Token,
}

/// One live session of the caller, of either kind.
#[derive(Serialize, ToSchema)]
pub struct Device {
    /// `ses_…`.
    pub id: String,
    /// `cookie` or `token`.
    pub kind: DeviceKind,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    /// Moves with use.
    pub last_seen_at: String,
    /// The absolute end.
    pub expires_at: String,
    /// The idle end; `null` for token sessions.
    pub idle_expires_at: Option<String>,
    /// The first 256 characters of the login's `User-Agent`.
    pub user_agent: Option<String>,
    /// The login's client address.
    pub ip: Option<String>,
    /// Whether this request's credential is of this session.
    pub current: bool,
}

/// `GET /v1/sessions`.
#[derive(Serialize, ToSchema)]
pub struct Devices {
    /// The caller's live sessions.
    pub sessions: Vec<Device>,
}

/// `no-store` on a response that carries a secret.
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `POST /v1/sessions`: [`Accounts::log_in`](crate::accounts::Accounts::log_in),
/// the secret in the cookie and the CSRF token in the body.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body = Credentials,
    responses(
        (status = 201, description = "Logged in: the session cookie and the device cookie are set.", body = SessionState,
            headers(("Set-Cookie" = String, description = "The session cookie and the device cookie."))),
        (status = 401, description = "`invalid_credentials`: unknown username, wrong password, or a disabled user.", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: throttled.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn login(
    State(app): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    JsonBody(creds): JsonBody<Credentials>,
) -> ApiResult<Response> {
    let SessionLogin {
        user,
        session,
        secret,
    } = app
        .accounts
        .log_in(creds.attempt(&app, &headers, client), now())
        .await?;
    let body = SessionState {
        user: UserRef {
            id: user.id,
            username: user.username.clone(),
        },
        session: SessionInfo::of(&session),
        csrf_token: Some(csrf::token_for(&secret)),
    };
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    let headers = res.headers_mut();
    let max_age = creds.remember.then_some(app.policy.absolute);
    headers.append(
        header::SET_COOKIE,
        app.cookies.set_session(secret.expose(), max_age),
    );
    headers.append(header::SET_COOKIE, app.device_cookie(&user.username));
    no_store(headers);
    Ok(res)
}

/// `GET /v1/sessions/current`: the session of the cookie, and its CSRF token
/// again so that a reloaded page can recover it.
#[utoipa::path(
    get,
    path = "/v1/sessions/current",
    tag = "sessions",
    security(("sessionCookie" = [])),
    responses(
        (status = 200, description = "The cookie's session and its CSRF token.", body = SessionState),
    )
)]
pub async fn current(CookieSession(p): CookieSession) -> Response {
    let body = SessionState {
        user: UserRef::of(&p),
        session: SessionInfo::of(&p.session),
        csrf_token: p.csrf_token(),
    };
    let mut res = Json(body).into_response();
    no_store(res.headers_mut());
    res
}

fn cleared_cookie(app: &AppState) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, app.cookies.clear_session());
    res
}

/// `DELETE /v1/sessions/current`: logout. Revokes the session on the server
/// and clears the cookie; replaying the old cookie gets `401`.
#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "sessions",
    security(("sessionCookie" = [], "csrfToken" = [])),
    responses(
        (status = 204, description = "Logged out: the session is revoked and the cookie cleared.",
            headers(("Set-Cookie" = String, description = "Clears the session cookie."))),
    )
)]
pub async fn logout(
    State(app): State<AppState>,
    CookieSession(p): CookieSession,
    Client(client): Client,
) -> ApiResult<Response> {
    app.accounts
        .end_session(&p.user_id, &p.session.id, Ending::Logout, &client, now())
        .await?;
    Ok(cleared_cookie(&app))
}

/// `GET /v1/sessions`: the caller's live sessions, every kind.
#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    security(("sessionCookie" = []), ("bearer" = []), ("accessCookie" = [])),
    responses(
        (status = 200, description = "The caller's live sessions, both kinds.", body = Devices),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    Authenticated(p): Authenticated,
) -> ApiResult<Json<Devices>> {
    let sessions = app.stores.sessions.list_sessions(&p.user_id, now()).await?;
    let sessions = sessions
        .into_iter()
        .map(|s| Device {
            current: s.id == p.session.id,
            kind: match s.kind {
                SessionKind::Cookie => DeviceKind::Cookie,
                SessionKind::Token => DeviceKind::Token,
            },
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.expires_at),
            idle_expires_at: s.idle_expires_at.map(rfc3339),
            id: s.id,
            user_agent: s.user_agent,
            ip: s.ip,
        })
        .collect();
    Ok(Json(Devices { sessions }))
}

/// `DELETE /v1/sessions/{id}`: revokes one of the caller's sessions. Another
/// user's id, or one already ended, is `404`, exactly like an unknown id.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "The session's id (`ses_…`).")),
    security(("sessionCookie" = [], "csrfToken" = []), ("bearer" = []), ("accessCookie" = [])),
    responses(
        (status = 204, description = "Revoked; when it was the caller's own cookie session, the cookie is cleared too."),
        (status = 404, description = "`not_found`: no such live session of the caller.", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(app): State<AppState>,
    Authenticated(p): Authenticated,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    // An id that is not even a string (bad percent-encoding) names no session.
    let Ok(Path(id)) = path else {
        return Err(ApiError::not_found("No such session."));
    };
    app.accounts
        .end_session(&p.user_id, &id, Ending::Revoked, &client, now())
        .await?;
    if id == p.session.id && p.csrf_token().is_some() {
        // The caller ended its own cookie session: drop the cookie too.
        return Ok(cleared_cookie(&app));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/sessions`: revokes every session of the caller but the current one.
#[utoipa::path(
    delete,
    path = "/v1/sessions",
    tag = "sessions",
    security(("sessionCookie" = [], "csrfToken" = []), ("bearer" = []), ("accessCookie" = [])),
    responses(
        (status = 204, description = "Every other session of the caller is revoked."),
    )
)]
pub async fn revoke_others(
    State(app): State<AppState>,
    Authenticated(p): Authenticated,
    Client(client): Client,
) -> ApiResult<StatusCode> {
    app.accounts
        .end_other_sessions(&p.user_id, &p.session.id, &client, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
