//! Operator routes behind the admin key: disable, enable or log out a user.
//! The same operations as `tessera user disable|enable|logout`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Serialize;
use tessera_store::UserRecord;
use utoipa::ToSchema;

use super::{now, rfc3339};
use tessera_core::session::ClientInfo;

use crate::accounts::{Outcome, UserChange};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, Client};

/// A user as an operator sees it.
#[derive(Serialize, ToSchema)]
pub struct AdminUser {
    /// `usr_…`.
    pub id: String,
    /// As registered.
    pub username: String,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    /// When the user was disabled, or `null` while enabled.
    pub disabled_at: Option<String>,
}

/// The answer of every operator route.
#[derive(Serialize, ToSchema)]
pub struct AdminUserChange {
    /// The user as it is now.
    pub user: AdminUser,
    /// How many sessions the change ended.
    pub revoked_sessions: u64,
}

/// The answer of every operator route: the user as it is now, and how many
/// sessions the change ended.
fn changed(done: Outcome<(UserRecord, usize)>) -> ApiResult<Json<AdminUserChange>> {
    let (user, revoked) = done?;
    Ok(Json(AdminUserChange {
        user: AdminUser {
            id: user.id,
            username: user.username,
            created_at: rfc3339(user.created_at),
            disabled_at: user.disabled_at.map(rfc3339),
        },
        revoked_sessions: revoked as u64,
    }))
}

/// Applies `change` to the user of the path; a `{username}` that does not
/// even decode names nobody.
async fn apply(
    app: &AppState,
    client: &ClientInfo,
    path: Result<Path<String>, PathRejection>,
    change: UserChange,
) -> ApiResult<Json<AdminUserChange>> {
    let Ok(Path(name)) = path else {
        return Err(ApiError::not_found("There is no such user."));
    };
    changed(app.accounts.change_user(&name, change, client, now()).await)
}

/// `POST /v1/admin/users/{username}/disable`:
/// [`Accounts::change_user`](crate::accounts::Accounts::change_user).
#[utoipa::path(
    post,
    path = "/v1/admin/users/{username}/disable",
    tag = "operators",
    params(("username" = String, Path, description = "The account, in any case.")),
    security(("adminKey" = []), ("adminBasic" = [])),
    responses(
        (status = 200, description = "Disables the user: every session of theirs ends, logins are refused. The user as it is now, and how many sessions ended.", body = AdminUserChange),
        (status = 404, description = "`not_found`: no user of that name (or admin routes are off).", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn disable(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<AdminUserChange>> {
    apply(&app, &client, path, UserChange::Disable).await
}

/// `POST /v1/admin/users/{username}/enable`.
#[utoipa::path(
    post,
    path = "/v1/admin/users/{username}/enable",
    tag = "operators",
    params(("username" = String, Path, description = "The account, in any case.")),
    security(("adminKey" = []), ("adminBasic" = [])),
    responses(
        (status = 200, description = "Enables a disabled user again. The user as it is now, and how many sessions ended.", body = AdminUserChange),
        (status = 404, description = "`not_found`: no user of that name (or admin routes are off).", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn enable(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<AdminUserChange>> {
    apply(&app, &client, path, UserChange::Enable).await
}

/// `POST /v1/admin/users/{username}/logout`.
#[utoipa::path(
    post,
    path = "/v1/admin/users/{username}/logout",
    tag = "operators",
    params(("username" = String, Path, description = "The account, in any case.")),
    security(("adminKey" = []), ("adminBasic" = [])),
    responses(
        (status = 200, description = "Ends every session of the user; the account stays enabled. The user as it is now, and how many sessions ended.", body = AdminUserChange),
        (status = 404, description = "`not_found`: no user of that name (or admin routes are off).", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn logout(
    State(app): State<AppState>,
    _admin: Admin,
    Client(client): Client,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<AdminUserChange>> {
    apply(&app, &client, path, UserChange::Logout).await
}
