//! Session-based authentication: login, the current session, logout and the
//! device list.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::session::ClientInfo;
use tessera_core::{SessionRecord, csrf};

use super::{now, rfc3339};
use crate::accounts::{Attempt, Ending, SessionLogin};
use crate::app::{App, AppState};
use crate::auth::{Authenticated, CookieSession, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Client, JsonBody};

/// Login body of `POST /v1/sessions` and `POST /v1/tokens`.
#[derive(Deserialize)]
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

fn user_json(p: &Principal) -> Value {
    json!({ "id": p.user_id, "username": p.username })
}

fn session_json(s: &SessionRecord) -> Value {
    json!({
        "id": s.id,
        "created_at": rfc3339(s.created_at),
        "expires_at": rfc3339(s.expires_at),
        "idle_expires_at": s.idle_expires_at.map(rfc3339),
    })
}

/// `no-store` on a response that carries a secret.
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `POST /v1/sessions`: [`Accounts::log_in`](crate::accounts::Accounts::log_in),
/// the secret in the cookie and the CSRF token in the body.
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
    let body = json!({
        "user": { "id": user.id, "username": user.username },
        "session": session_json(&session),
        "csrf_token": csrf::token_for(&secret),
    });
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
pub async fn current(CookieSession(p): CookieSession) -> Response {
    let body = json!({
        "user": user_json(&p),
        "session": session_json(&p.session),
        "csrf_token": p.csrf_token(),
    });
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
pub async fn list(
    State(app): State<AppState>,
    Authenticated(p): Authenticated,
) -> ApiResult<Json<Value>> {
    let sessions = app.stores.sessions.list_sessions(&p.user_id, now()).await?;
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "kind": s.kind.as_str(),
                "created_at": rfc3339(s.created_at),
                "last_seen_at": rfc3339(s.last_seen_at),
                "expires_at": rfc3339(s.expires_at),
                "idle_expires_at": s.idle_expires_at.map(rfc3339),
                "user_agent": s.user_agent,
                "ip": s.ip,
                "current": s.id == p.session.id,
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": sessions })))
}

/// `DELETE /v1/sessions/{id}`: revokes one of the caller's sessions. Another
/// user's id, or one already ended, is `404`, exactly like an unknown id.
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
