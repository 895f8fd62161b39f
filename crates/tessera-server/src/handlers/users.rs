//! Accounts: registration and password change.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rand_core::OsRng;
use serde::Deserialize;
use serde_json::json;
use tessera_core::{Password, Username, ids};
use tessera_store::{StoreError, UserRecord};

use super::rfc3339;
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Client, JsonBody};
use crate::login;

/// `POST /v1/users` body.
#[derive(Deserialize)]
pub struct NewUser {
    username: String,
    password: String,
}

fn username_taken() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "username_taken",
        "That username is already taken.",
    )
}

fn hash_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "password hashing failed");
    ApiError::internal()
}

/// `POST /v1/users`: registers an account.
pub async fn register(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<NewUser>,
) -> ApiResult<impl IntoResponse> {
    if !app.settings.registration_open {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "Registration is closed on this server.",
        ));
    }
    let username =
        Username::parse(&body.username).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let password =
        Password::parse(&body.password).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    // A cheap early answer; the store's uniqueness rule still decides races.
    if app
        .stores
        .users
        .user_by_username(username.as_str())
        .await?
        .is_some()
    {
        return Err(username_taken());
    }
    let password_hash = app.passwords.hash(password).await.map_err(hash_failed)?;
    let user = UserRecord {
        id: ids::user_id(&mut OsRng),
        username: username.as_str().to_owned(),
        password_hash,
        created_at: crate::handlers::now(),
    };
    match app.stores.users.create_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(username_taken()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user_id = %user.id, "user registered");
    metrics::counter!("tessera_registrations_total").increment(1);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": user.id,
            "username": user.username,
            "created_at": rfc3339(user.created_at),
        })),
    ))
}

/// `POST /v1/users/me/password` body.
#[derive(Deserialize)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /v1/users/me/password`: changes the password and revokes every
/// other session of the user, of either kind.
pub async fn change_password(
    State(app): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    JsonBody(body): JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    let new_password = Password::parse(&body.new_password)
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let now = crate::handlers::now();
    let user = login::check_password(
        &app,
        "password_change",
        &principal.username,
        &body.current_password,
        &client,
        now,
    )
    .await?;
    if user.id != principal.user_id {
        // The name now belongs to someone else: cannot happen without deletion.
        return Err(ApiError::unauthenticated());
    }
    let hash = app
        .passwords
        .hash(new_password)
        .await
        .map_err(hash_failed)?;
    app.stores.users.set_password_hash(&user.id, &hash).await?;
    let revoked = app
        .stores
        .sessions
        .revoke_user_sessions(&user.id, Some(&principal.session.id), now)
        .await?;
    tracing::info!(user_id = %user.id, revoked = revoked.len(), "password changed");
    Ok(StatusCode::NO_CONTENT)
}
