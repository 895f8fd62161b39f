//! Operator routes behind the admin key: disable, enable or log out a user.
//! The same operations as `tessera user disable|enable|logout`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tessera_store::UserRecord;

use super::{now, rfc3339};
use crate::accounts::Outcome;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, Client};

/// The answer of every operator route: the user as it is now, and how many
/// sessions the change ended.
fn changed(done: Outcome<(UserRecord, usize)>) -> ApiResult<Json<Value>> {
    let (user, revoked) = done?;
    Ok(Json(json!({
        "user": {
            "id": user.id,
            "username": user.username,
            "created_at": rfc3339(user.created_at),
            "disabled_at": user.disabled_at.map(rfc3339),
        },
        "revoked_sessions": revoked,
    })))
}

/// The `{username}` of the path; one that does not even decode names nobody.
fn username(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    path.map(|Path(name)| name)
        .map_err(|_| ApiError::not_found("There is no such user."))
}

/// `POST /v1/admin/users/{username}/disable`:
/// [`Accounts::disable_user`](crate::accounts::Accounts::disable_user).
pub async fn disable(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let name = username(path)?;
    changed(app.accounts.disable_user(&name, &client, now()).await)
}

/// `POST /v1/admin/users/{username}/enable`.
pub async fn enable(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let name = username(path)?;
    changed(app.accounts.enable_user(&name, &client, now()).await)
}

/// `POST /v1/admin/users/{username}/logout`:
/// [`Accounts::log_out_user`](crate::accounts::Accounts::log_out_user).
pub async fn logout(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let name = username(path)?;
    changed(app.accounts.log_out_user(&name, &client, now()).await)
}
