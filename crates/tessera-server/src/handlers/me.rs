//! `GET /v1/me`: who am I, whichever way I authenticated.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::rfc3339;
use crate::auth::Authenticated;

/// `GET /v1/me`.
pub async fn me(Authenticated(p): Authenticated) -> Json<Value> {
    Json(json!({
        "user": { "id": p.user_id, "username": p.username },
        "auth": {
            "method": p.method.as_str(),
            "session_id": p.session.id,
            "expires_at": rfc3339(p.expires_at),
        },
    }))
}

/// `GET /v1/auth/verify`: forward-auth for reverse proxies. `200` with the
/// user in `X-Auth-*` headers, or `401`.
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
