//! `GET /v1/me`: who am I, whichever way I authenticated.

use axum::Json;
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
            "expires_at": rfc3339(p.session.effective_expiry()),
        },
    }))
}
