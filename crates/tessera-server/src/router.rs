//! The router of `docs/api.md` and the middleware every route shares.
//!
//! The shared middleware wraps the whole router once, rather than each route
//! (which is what `Router::layer` does, cloning every layer of the stack per
//! request), and the access log line is formatted by hand and written in
//! batches ([`crate::access_log`]): together they cost as much as a route did
//! (`docs/profile-healthz.md`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use metrics::{Counter, Histogram};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument as _;

use crate::access_log;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{MAX_BODY_BYTES, payload_too_large};
use crate::handlers::{admin, me, ops, sessions, tokens, users};
use crate::listener::ConnHandle;
use crate::pages;
use crate::telemetry::REQUEST_DURATION;

/// The route template a request matched, put on the response by the route
/// itself for the outer middleware (which runs before routing).
#[derive(Clone, Copy)]
struct Route(&'static str);

/// Marks a route's responses with its template, for the request metrics
/// (only when they are recorded): a plain `map_response`, no boxed future per
/// request. As a `route_layer`, it does not run for a `405` (whose route label
/// is `unmatched`, as before).
fn remember(
    route: &'static str,
) -> tower::util::MapResponseLayer<impl Fn(Response) -> Response + Clone + Send + Sync + 'static> {
    tower::util::MapResponseLayer::new(move |mut res: Response| {
        if crate::telemetry::metrics_installed() {
            res.extensions_mut().insert(Route(route));
        }
        res
    })
}

/// Declares every route once: [`ROUTES`], the `(method, path)` list that
/// `docs/api.md` and the OpenAPI document are tested against, and the router built
/// from the same lines, so the two cannot drift apart.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route the router serves, as `(method, path template)`.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn api_routes() -> Router<AppState> {
            Router::new()$(.route(
                $path,
                on(MethodFilter::$method, $handler).route_layer(remember($path)),
            ))*
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

/// Builds the whole application; `tessera serve` serves it
/// ([`crate::listener::serve`]).
///
/// The shared middleware, outermost first: [`common`] (the access log, the
/// limits, the body read, the cross-site guard, the headers and the
/// metrics); the body limit of the extractors; the panic catcher; then the
/// routes. One `from_fn` layer around the whole router: each one boxes a
/// future and a service per request.
pub fn router(
    app: AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let routes = api_routes()
        .fallback(|| async { ApiError::not_found("No such route.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This route does not accept that method.",
            )
        })
        .with_state(app.clone());
    tower::ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(app, common))
        // Every body-reading extractor stops at 64 KiB, whatever it is.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside `common`, so that a panic's 500 gets the common headers,
        // metrics and log line.
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
        .service(routes)
}

/// The access log line of a request ([`access_log`]); a `5xx` is also
/// logged at `error`. Method and path only: headers and query strings may
/// carry secrets.
fn log_request(method: &Method, uri: &axum::http::Uri, status: StatusCode, latency: Duration) {
    if access_log::enabled() {
        access_log::record(
            SystemTime::now(),
            method,
            uri.path(),
            status.as_u16(),
            latency,
        );
    }
    if status.is_server_error() {
        tracing::error!(
            target: "tower_http::trace::on_failure",
            method = %method,
            path = %uri.path(),
            classification = %format_args!("Status code: {status}"),
            latency = %format_args!("{} ms", latency.as_millis()),
            "response failed"
        );
    }
}

/// Reads the whole body before routing, within `--body-read-timeout` in all
/// (a deadline, not a pause between bytes: a client trickling one byte at a
/// time gets no more), then hands it on in memory. Answers
/// `408 request_timeout` and closes the connection when the body is late.
/// Reading stops past 64 KiB: the body extractors answer `413` for that.
/// Then refuses a cross-site request ([`crate::origin::refusal`]). `Err` is
/// the answer when the request goes no further.
async fn read_body(app: &AppState, req: Request) -> Result<Request, Response> {
    let req = if req.body().is_end_stream() {
        req
    } else {
        read_late_body(app.settings.body_read_timeout.unsigned_abs(), req).await?
    };
    match crate::origin::refusal(app, &req) {
        Some(refused) => Err(refused),
        None => Ok(req),
    }
}

/// The request with its body read within `limit`.
async fn read_late_body(limit: Duration, req: Request) -> Result<Request, Response> {
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
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body could not be read.",
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
        .into_response()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "The request body did not arrive in time.",
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
        .into_response()),
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

/// Limits and headers for every route, the body read ([`read_body`]), the
/// access line and the request metrics.
///
/// The request's span, for the events logged while it is handled, is at
/// `debug`, so that it costs nothing unless asked for
/// (`RUST_LOG=info,tessera_server::router=debug`); the access line has the
/// method and path.
async fn common(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let span = tracing::debug_span!("request", method = %method, path = %uri.path());
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let mut res = if too_large {
        payload_too_large().into_response()
    } else {
        async {
            match read_body(&app, req).await {
                Ok(req) => next.run(req).await,
                Err(res) => res,
            }
        }
        .instrument(span)
        .await
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
    log_request(&method, &uri, res.status(), start.elapsed());
    // Recorded only when they are served (`--metrics-listen`).
    if app.metrics.is_some() {
        let route = res.extensions().get::<Route>().map_or("unmatched", |r| r.0);
        let (requests, duration) = request_metrics(route, &method, res.status());
        requests.increment(1);
        duration.record(start.elapsed().as_secs_f64());
    }
    res
}

/// The request counter and latency histogram of one route, method and
/// status, registered once: `metrics::counter!` with owned labels allocates
/// and hashes a key on every call. Only the standard methods are kept here,
/// so that a client inventing methods grows nothing but the exporter's own
/// registry, as before.
fn request_metrics(
    route: &'static str,
    method: &Method,
    status: StatusCode,
) -> (Counter, Histogram) {
    type Handles = HashMap<(&'static str, Method, u16), (Counter, Histogram)>;
    static HANDLES: OnceLock<Mutex<Handles>> = OnceLock::new();
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    if !STANDARD.contains(method) {
        return register_request_metrics(route, method, status);
    }
    let mut handles = HANDLES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    handles
        .entry((route, method.clone(), status.as_u16()))
        .or_insert_with(|| register_request_metrics(route, method, status))
        .clone()
}

fn register_request_metrics(
    route: &'static str,
    method: &Method,
    status: StatusCode,
) -> (Counter, Histogram) {
    let method = method.as_str().to_owned();
    (
        metrics::counter!(
            "tessera_http_requests_total",
            "route" => route,
            "method" => method.clone(),
            "status" => status.as_u16().to_string()
        ),
        metrics::histogram!(REQUEST_DURATION, "route" => route, "method" => method),
    )
}
