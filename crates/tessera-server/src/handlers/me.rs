//! `GET /v1/me`: who am I, whichever way I authenticated.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::rfc3339;
use super::sessions::UserRef;
use crate::auth::{AuthMethod, Authenticated};
use crate::error::ErrorBody;

/// How a request authenticated.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The session cookie.
    Session,
    /// `Authorization: Bearer`.
    Bearer,
    /// The access-token cookie.
    CookieToken,
}

impl From<AuthMethod> for Method {
    fn from(m: AuthMethod) -> Self {
        match m {
            AuthMethod::Session => Self::Session,
            AuthMethod::Bearer => Self::Bearer,
            AuthMethod::CookieToken => Self::CookieToken,
        }
    }
}

/// The credential of a request.
#[derive(Serialize, ToSchema)]
pub struct MeAuth {
    /// `session`, `bearer` or `cookie_token`.
    pub method: Method,
    /// The session of the credential (for a token, its `sid`).
    pub session_id: String,
    /// When this credential stops working.
    pub expires_at: String,
}

/// `GET /v1/me`.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// Who is calling.
    pub user: UserRef,
    /// How.
    pub auth: MeAuth,
}

/// `GET /v1/me`.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "who is calling",
    security(("sessionCookie" = []), ("bearer" = []), ("accessCookie" = [])),
    responses(
        (status = 200, description = "Who is calling, and how.", body = Me),
    )
)]
pub async fn me(Authenticated(p): Authenticated) -> Json<Me> {
    Json(Me {
        auth: MeAuth {
            method: p.method.into(),
            session_id: p.session.id.clone(),
            expires_at: rfc3339(p.expires_at),
        },
        user: UserRef {
            id: p.user_id,
            username: p.username,
        },
    })
}

/// `GET /v1/auth/verify`: forward-auth for reverse proxies. `200` with the
/// user in `X-Auth-*` headers, or `401`.
#[utoipa::path(
    get,
    path = "/v1/auth/verify",
    tag = "who is calling",
    params(
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original request's method (Traefik, Caddy): the CSRF and cross-site rules judge it."),
        ("X-Original-Method" = Option<String>, Header, description = "The same, as nginx configurations send it."),
    ),
    security(("sessionCookie" = []), ("bearer" = []), ("accessCookie" = [])),
    responses(
        (status = 200, description = "Authenticated; empty body, the user in headers.",
            headers(
                ("X-Auth-User-Id" = String, description = "`usr_…`"),
                ("X-Auth-Username" = String),
                ("X-Auth-Method" = String, description = "`session`, `bearer` or `cookie_token`"),
                ("X-Auth-Session-Id" = String, description = "`ses_…`"),
            )),
        (status = 403, description = "`csrf_failed`: a session cookie and an unsafe original method without the session's `X-CSRF-Token`.", body = ErrorBody),
    )
)]
pub async fn verify(Authenticated(p): Authenticated) -> Response {
    let mut res = StatusCode::OK.into_response();
    let h = res.headers_mut();
    for (name, value) in [
        ("x-auth-user-id", p.user_id.as_str()),
        ("x-auth-username", p.username.as_str()),
        ("x-auth-method", p.method.as_str()),
        ("x-auth-session-id", p.session.id.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    res
}
