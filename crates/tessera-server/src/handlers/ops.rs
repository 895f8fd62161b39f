//! Operations: liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

/// How long `/readyz` waits for each store.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Whether a store answered `/readyz`.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// It answered within 2 s.
    Ok,
    /// It did not.
    Unavailable,
}

/// `GET /readyz` when every store answers.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// Each configured store (`database`, `redis`).
    pub checks: BTreeMap<&'static str, Check>,
}

/// `GET /readyz` when a store does not answer: the error body, with the checks.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    /// `unavailable`.
    pub error: &'static str,
    /// A sentence for people.
    pub message: &'static str,
    /// Each configured store.
    pub checks: BTreeMap<&'static str, Check>,
}

/// `GET /healthz`: the process runs. Touches no store.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs.", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: `200` when every configured store answers, else `503`
/// naming the ones that did not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every configured store answers.", body = Ready),
        (status = 503, description = "A store does not answer.", body = NotReady),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let mut checks = BTreeMap::new();
    let mut ready = true;
    for (name, store) in &app.stores.health {
        let ok = matches!(
            tokio::time::timeout(PING_TIMEOUT, store.ping()).await,
            Ok(Ok(()))
        );
        ready &= ok;
        checks.insert(*name, if ok { Check::Ok } else { Check::Unavailable });
    }
    if ready {
        Json(Ready {
            status: "ready",
            checks,
        })
        .into_response()
    } else {
        let body = NotReady {
            error: "unavailable",
            message: "A backing store does not answer.",
            checks,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `GET /openapi.json`: the document [`crate::openapi`] builds from the
/// handlers' annotations, once per process.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object, content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
    )
)]
pub async fn openapi() -> Response {
    let mut res = crate::openapi::json().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let Some(handle) = &app.metrics else {
        return crate::error::ApiError::not_found("Metrics are not recorded in this process.")
            .into_response();
    };
    match app
        .stores
        .sessions
        .count_live_sessions(crate::handlers::now())
        .await
    {
        Ok(n) => metrics::gauge!("tessera_active_sessions").set(n as f64),
        Err(e) => {
            tracing::warn!(error = %crate::error::error_chain(&e), "cannot count sessions for metrics")
        }
    }
    let mut res = handle.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
