//! Checking a username and password, with the throttle around it.
//!
//! The one path every login takes, whatever it issues afterwards:
//!
//! 1. If the username or the client address has too many recent failures,
//!    refuse with `429` and `Retry-After` before looking at the password.
//! 2. Verify the password — against the dummy hash when the user does not
//!    exist, so both failures cost the same and answer the same.
//! 3. On failure, count it for the username and the address.
//!    On success, clear the username's count, and store a fresh hash if the
//!    stored one used older parameters.

use tessera_core::account::key_of;
use tessera_core::password::Verdict;
use tessera_core::throttle::{ThrottlePolicy, retry_after_seconds};
use tessera_core::{Password, session::ClientInfo};
use tessera_store::UserRecord;
use time::OffsetDateTime;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

/// The throttle keys of a login attempt, each with its policy.
fn keys(username: &str, client: &ClientInfo) -> Vec<(String, ThrottlePolicy)> {
    let mut keys = vec![(
        format!("user:{}", key_of(username)),
        ThrottlePolicy::PER_USERNAME,
    )];
    if let Some(ip) = &client.ip {
        keys.push((format!("ip:{ip}"), ThrottlePolicy::PER_ADDRESS));
    }
    keys
}

/// Refuses with `429` if any of `keys` is throttled at `now`.
async fn ensure_not_throttled(
    app: &App,
    keys: &[(String, ThrottlePolicy)],
    now: OffsetDateTime,
) -> ApiResult<()> {
    for (key, policy) in keys {
        let window = app
            .stores
            .throttle
            .failures(key, now, policy.window)
            .await?;
        if let Some(wait) = policy.retry_after(window, now) {
            return Err(ApiError::too_many_attempts(retry_after_seconds(wait)));
        }
    }
    Ok(())
}

/// Checks `password` for the user `username`. `what` labels the metric
/// (`session`, `token`, `password_change`).
pub async fn check_password(
    app: &App,
    what: &'static str,
    username: &str,
    password: &str,
    client: &ClientInfo,
    now: OffsetDateTime,
) -> ApiResult<UserRecord> {
    let result = check(app, username, password, client, now).await;
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.code(),
    };
    metrics::counter!("tessera_logins_total", "method" => what, "outcome" => outcome).increment(1);
    result
}

async fn check(
    app: &App,
    username: &str,
    password: &str,
    client: &ClientInfo,
    now: OffsetDateTime,
) -> ApiResult<UserRecord> {
    let keys = keys(username, client);
    ensure_not_throttled(app, &keys, now).await?;

    let user = app.stores.users.user_by_username(username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verdict = app
        .passwords
        .verify(stored, password.to_owned())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password verification failed");
            ApiError::internal()
        })?;

    match (user, verdict) {
        (Some(user), Verdict::Valid { rehash }) => {
            app.stores.throttle.clear_failures(&keys[0].0).await?;
            if rehash {
                upgrade_hash(app, &user, password).await;
            }
            Ok(user)
        }
        _ => {
            for (key, policy) in &keys {
                app.stores
                    .throttle
                    .record_failure(key, now, policy.window)
                    .await?;
            }
            Err(ApiError::invalid_credentials())
        }
    }
}

/// Stores a hash with the current parameters. A failure here only delays the
/// upgrade to the next login, so it is logged, not returned.
async fn upgrade_hash(app: &App, user: &UserRecord, password: &str) {
    let Ok(password) = Password::parse(password) else {
        return;
    };
    match app.passwords.hash(password).await {
        Ok(hash) => {
            if let Err(e) = app.stores.users.set_password_hash(&user.id, &hash).await {
                tracing::warn!(user_id = %user.id, error = %crate::error::error_chain(&e), "password rehash not stored");
            }
        }
        Err(e) => tracing::warn!(user_id = %user.id, error = %e, "password rehash failed"),
    }
}
