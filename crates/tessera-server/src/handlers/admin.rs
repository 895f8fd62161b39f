//! Operator routes behind the admin key: disable, enable or log out a user.
//! The same operations as `tessera user disable|enable|logout`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tessera_store::UserRecord;

use super::{now, rfc3339};
use tessera_core::session::ClientInfo;

use crate::accounts::{Outcome, UserChange};
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

/// Applies `change` to the user of the path; a `{username}` that does not
/// even decode names nobody.
async fn apply(
    app: &AppState,
    client: &ClientInfo,
    path: Result<Path<String>, PathRejection>,
    change: UserChange,
) -> ApiResult<Json<Value>> {
    let Ok(Path(name)) = path else {
        return Err(ApiError::not_found("There is no such user."));
    };
    changed(app.accounts.change_user(&name, change, client, now()).await)
}

/// `POST /v1/admin/users/{username}/disable`:
/// [`Accounts::change_user`](crate::accounts::Accounts::change_user).
pub async fn disable(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    apply(&app, &client, path, UserChange::Disable).await
}

/// `POST /v1/admin/users/{username}/enable`.
pub async fn enable(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    apply(&app, &client, path, UserChange::Enable).await
}

/// `POST /v1/admin/users/{username}/logout`.
pub async fn logout(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    apply(&app, &client, path, UserChange::Logout).await
}
