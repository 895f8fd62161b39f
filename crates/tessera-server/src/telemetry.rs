//! Logs and metrics.
//!
//! Logs go to standard error through `tracing`; a request is logged with its
//! method, path, status and latency — never headers, bodies or query strings,
//! so no cookie, token or password can reach a log. Metrics are recorded with
//! the `metrics` facade and rendered by the Prometheus exporter at `/metrics`
//! on the metrics listener (`--metrics-listen`), when there is one.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Name of the request latency histogram.
pub const REQUEST_DURATION: &str = "tessera_http_request_duration_seconds";

const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Whether [`install_metrics`] installed the recorder: without it, metrics go
/// nowhere and the request metrics are not even computed.
pub fn metrics_installed() -> bool {
    HANDLE.get().is_some_and(Option::is_some)
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install_metrics() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full(crate::store_metrics::STORE_DURATION.to_owned()),
                    BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(Matcher::Full(crate::auth_cache::LAG.to_owned()), BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "tessera_http_requests_total",
        "HTTP requests by route, method and status."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency by route."
    );
    metrics::describe_counter!(
        "tessera_logins_total",
        "Password checks by kind of login and outcome."
    );
    metrics::describe_counter!(
        "tessera_authentications_total",
        "Credential checks by method and outcome (ok, or the refusal reason)."
    );
    metrics::describe_gauge!(
        "tessera_active_sessions",
        "Live sessions, counted at scrape time."
    );
    metrics::describe_counter!(
        "tessera_csrf_failures_total",
        "Cookie requests refused for a missing or wrong CSRF token."
    );
    metrics::describe_counter!("tessera_registrations_total", "Accounts created.");
    metrics::describe_counter!(
        "tessera_sessions_ended_total",
        "Sessions and token families ended, by reason (logout, revoked, others_revoked, \
         password_change, token_revoked, refresh_reused, user_disabled, user_logout, user_deleted)."
    );
    metrics::describe_counter!(
        "tessera_throttled_attempts_total",
        "Logins and registrations refused with 429, by the limit that stopped them."
    );
    metrics::describe_counter!(
        "tessera_key_rotations_total",
        "Signing-key rotations made by this process."
    );
    metrics::describe_counter!(
        "tessera_key_reloads_total",
        "Signing-key reloads, by outcome (unchanged, rotated: a new current key, failed)."
    );
    metrics::describe_gauge!(
        "tessera_password_hash_queue_depth",
        "Password hashes waiting for a hashing thread."
    );
    metrics::describe_histogram!(
        crate::store_metrics::STORE_DURATION,
        metrics::Unit::Seconds,
        "Store call latency by backend (sqlite, postgres, redis) and operation."
    );
    metrics::describe_counter!(
        "tessera_refreshes_total",
        "Refresh-token exchanges by outcome (rotated, grace, reused, or why refused)."
    );
    metrics::describe_counter!(
        "tessera_token_verifications_total",
        "Access-token checks by outcome (verified, cached, or the refusal reason)."
    );
    metrics::describe_counter!(
        "tessera_tokens_issued_total",
        "Access tokens issued, by delivery (body, cookie)."
    );
    metrics::describe_counter!(
        "tessera_cross_site_refusals_total",
        "Requests refused as cross-site, by what showed it (origin, sec_fetch_site)."
    );
}

/// Keeps histogram memory bounded; call periodically.
pub fn upkeep(handle: &PrometheusHandle) {
    handle.run_upkeep();
}

/// How often maintenance runs.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);

/// Sets up `tracing` to standard error, filtered by `RUST_LOG` (default
/// `info,sqlx=warn`).
///
/// `RUST_LOG` is a list of `target=level` directives and a default level
/// (`warn,tessera_server=debug`), as `tracing_subscriber`'s `Targets` reads
/// it; span and field filters are not supported (they would need the `regex`
/// engine in the binary). A value that does not parse is reported and the
/// default used.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    const DEFAULT: &str = "info,sqlx=warn";
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => value.parse().unwrap_or_else(|e| {
            eprintln!("tessera: RUST_LOG={value:?} is not a list of target=level directives ({e}); using {DEFAULT:?}");
            DEFAULT.parse().unwrap_or_default()
        }),
        _ => DEFAULT.parse().unwrap_or_default(),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with::<tracing_subscriber::filter::Targets>(filter)
        .with(fmt)
        .try_init();
}
