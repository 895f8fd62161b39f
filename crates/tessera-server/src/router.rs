//! The router of `docs/api.md` and the middleware every route shares.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{MAX_BODY_BYTES, payload_too_large};
use crate::handlers::{admin, me, ops, sessions, tokens, users};
use crate::listener::ConnHandle;
use crate::pages;
use crate::telemetry::REQUEST_DURATION;

/// The route template a request matched, passed from the inner middleware to
/// the outer one (which runs before routing and cannot see it otherwise).
#[derive(Clone)]
struct Route(String);

/// Declares every route once: [`ROUTES`], the `(method, path)` list that
/// `docs/api.md` and the OpenAPI document are tested against, and the router built
/// from the same lines, so the two cannot drift apart.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route the router serves, as `(method, path template)`.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn api_routes() -> Router<AppState> {
            Router::new()$(.route($path, on(MethodFilter::$method, $handler)))*
        }
    };
}

routes! {
    POST "/v1/users" => users::register;
    POST "/v1/users/me/password" => users::change_password;
    POST "/v1/sessions" => sessions::login;
    GET "/v1/sessions" => sessions::list;
    DELETE "/v1/sessions" => sessions::revoke_others;
    GET "/v1/sessions/current" => sessions::current;
    DELETE "/v1/sessions/current" => sessions::logout;
    DELETE "/v1/sessions/{id}" => sessions::revoke;
    GET "/v1/me" => me::me;
    GET "/v1/auth/verify" => me::verify;
    POST "/v1/tokens" => tokens::login;
    POST "/v1/tokens/refresh" => tokens::refresh;
    POST "/v1/tokens/revoke" => tokens::revoke;
    POST "/v1/tokens/introspect" => tokens::introspect;
    GET "/.well-known/jwks.json" => tokens::jwks;
    POST "/v1/admin/users/{username}/disable" => admin::disable;
    POST "/v1/admin/users/{username}/enable" => admin::enable;
    POST "/v1/admin/users/{username}/logout" => admin::logout;
    GET "/healthz" => ops::healthz;
    GET "/readyz" => ops::readyz;
    GET "/openapi.json" => ops::openapi;
    GET "/" => pages::home;
    GET "/signup" => pages::signup_page;
    POST "/signup" => pages::signup;
    GET "/login" => pages::login_page;
    POST "/login" => pages::login;
    POST "/logout" => pages::logout;
    GET "/account" => pages::account;
    POST "/account/devices/end" => pages::end_device;
    POST "/account/devices/end-others" => pages::end_others;
    POST "/account/password" => pages::change_password;
    POST "/account/tamper" => pages::tamper;
    GET "/v1/tokens/resume" => pages::resume;
    POST "/v1/tokens/logout" => pages::token_logout;
    GET "/assets/pages.css" => pages::stylesheet;
    GET "/assets/pages.js" => pages::script;
}

/// Builds the whole application. Tests and `main` both call this.
pub fn router(app: AppState) -> Router {
    let body_read_timeout = app.settings.body_read_timeout.unsigned_abs();
    api_routes()
        .route_layer(middleware::from_fn(remember_route))
        .fallback(|| async { ApiError::not_found("No such route.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This route does not accept that method.",
            )
        })
        .layer(middleware::from_fn_with_state(app.clone(), crate::origin::guard))
        // Inside `common`, so that a panic's 500 gets the common headers and metrics.
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        // Inside `common` too: a 408 gets the common headers and metrics, and
        // a Content-Length over the limit is refused before any is read.
        .layer(middleware::from_fn_with_state(body_read_timeout, read_body))
        .layer(middleware::from_fn_with_state(app.clone(), common))
        // Every body-reading extractor stops at 64 KiB, whatever it is.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http()
                // Method and path only: headers and query strings may carry secrets.
                .make_span_with(|req: &Request| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(app)
}

/// Reads the whole body before routing, within `--body-read-timeout` in all
/// (a deadline, not a pause between bytes: a client trickling one byte at a
/// time gets no more), then hands it on in memory. Answers
/// `408 request_timeout` and closes the connection when the body is late.
/// Reading stops past 64 KiB: the body extractors answer `413` for that.
async fn read_body(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let conn = req.extensions().get::<ConnHandle>().cloned();
    let (parts, body) = req.into_parts();
    // While the body is late, the connection is the client's to blame: the
    // connection cap may close it to make room for another.
    if let Some(conn) = &conn {
        conn.client_turn();
    }
    let read = tokio::time::timeout(limit, buffer_body(body)).await;
    if let Some(conn) = &conn {
        conn.server_turn();
    }
    match read {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body could not be read.",
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "The request body did not arrive in time.",
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
        .into_response(),
    }
}

/// The body's bytes, up to one past the limit.
async fn buffer_body(mut body: Body) -> Result<Vec<u8>, axum::Error> {
    use http_body_util::BodyExt as _;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > MAX_BODY_BYTES {
                break;
            }
        }
    }
    Ok(bytes)
}

/// The metrics listener's router (`--metrics-listen`): `/metrics` and
/// nothing else. Its requests are not counted in the request metrics.
pub fn metrics_router(app: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(ops::metrics))
        .fallback(|| async { ApiError::not_found("No such route.") })
        .layer(middleware::from_fn(|req: Request, next: Next| async move {
            let mut res = next.run(req).await;
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            res
        }))
        .with_state(app)
}

async fn remember_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut res = next.run(req).await;
    if let Some(route) = route {
        res.extensions_mut().insert(Route(route));
    }
    res
}

/// Limits and headers for every route, and the request metrics.
async fn common(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let mut res = if too_large {
        payload_too_large().into_response()
    } else {
        next.run(req).await
    };
    let headers = res.headers_mut();
    // Authentication answers are personal: no shared cache may keep them.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Secure cookies mean HTTPS: tell browsers never to use plain HTTP here.
    if app.settings.hsts && !app.settings.insecure_dev_cookies {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let route = res
        .extensions()
        .get::<Route>()
        .map_or_else(|| "unmatched".to_owned(), |r| r.0.clone());
    let status = res.status().as_u16().to_string();
    metrics::counter!("tessera_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    res
}
