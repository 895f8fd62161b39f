//! `tessera serve`: bind, open the stores, announce, serve until SIGINT or
//! SIGTERM, then finish the requests in flight and close the stores. The
//! port is bound first, so a start that fails on a busy port has created
//! nothing (no database, no key file).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, AppState, Stores};
use crate::auth_cache::AuthCache;
use crate::settings::{SettingError, Settings};
use crate::telemetry;

/// Why the port could not be bound, and what to do; `metrics` for the
/// metrics listener.
fn listen_error(listen: SocketAddr, e: &std::io::Error, metrics: bool) -> SettingError {
    let problem = match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {listen}: the port is in use (another tessera?); stop that \
             process or choose another address"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {listen}: permission denied (ports below 1024 need privileges); \
             choose a port above 1023 and let a proxy listen on the low one"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {listen}: this machine has no such address; use 127.0.0.1, \
             0.0.0.0 or one of its own addresses"
        ),
        _ => format!("cannot listen on {listen}: {e}"),
    };
    if metrics {
        SettingError {
            name: "metrics_listen",
            flag: "metrics-listen",
            env: "TESSERA_METRICS_LISTEN",
            problem,
        }
    } else {
        SettingError {
            name: "listen",
            flag: "listen",
            env: "TESSERA_LISTEN",
            problem,
        }
    }
}

/// Runs the server until a shutdown signal.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    settings.check_serve()?;
    // Before binding, so that every descriptor the process opens counts
    // against the raised limit.
    let open_files = crate::listener::raise_open_file_limit();
    let listen = settings.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| listen_error(listen, &e, false))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let metrics_listener = match settings.metrics_listen {
        Some(listen) => Some(
            TcpListener::bind(listen)
                .await
                .map_err(|e| listen_error(listen, &e, true))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("reading the bound metrics address")?;
    if settings.insecure_dev_cookies {
        tracing::warn!(
            "--insecure-dev-cookies: cookies without Secure, for plain HTTP on this machine only; \
             never in production"
        );
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "--allow-insecure-cookies-on-network: session and token cookies travel in clear \
                 text to and from other machines"
            );
        }
    }
    // Recorded only when they are served.
    let metrics = metrics_listener
        .as_ref()
        .and_then(|_| telemetry::install_metrics());
    let cache = (settings.auth_cache_ttl > time::Duration::ZERO).then(|| {
        Arc::new(AuthCache::new(
            settings.auth_cache_ttl.unsigned_abs(),
            crate::auth_cache::origin(),
        ))
    });
    let stores = Stores::open_for_serving(&settings, metrics.is_some(), cache.clone()).await?;
    // The cache is trusted only once its feed is up (see `auth_cache`).
    let feed = cache
        .clone()
        .map(|cache| tokio::spawn(crate::auth_cache::listen(stores.feed.clone(), cache)));
    let keys = crate::keys::Keys::open(stores.keys.clone(), &settings, crate::handlers::now())
        .await
        .map_err(crate::keys::KeyLoadError::into_anyhow)?;
    let limits = crate::listener::Limits {
        header_read_timeout: settings.header_read_timeout.unsigned_abs(),
        max_connections: crate::listener::connection_cap(
            settings.max_connections,
            open_files,
            settings.database_max_connections,
        ),
    };
    let app = App::new(settings, stores, keys, metrics)?;

    let maintenance = tokio::spawn(maintain(app.clone()));
    let key_reload = tokio::spawn(reload_keys(app.clone()));
    let router = crate::router::router(app.clone());
    let metrics_router = crate::router::metrics_router(app.clone());

    // The line tests and scripts wait for, on standard output, and then
    // the metrics address, if metrics are served.
    let mut out = std::io::stdout().lock();
    writeln!(out, "tessera listening on http://{addr}").context("writing to stdout")?;
    if let Some(metrics_addr) = metrics_addr {
        writeln!(out, "tessera metrics on http://{metrics_addr}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    drop(out);
    tracing::info!(%addr, max_connections = limits.max_connections, "serving");
    if let Some(metrics_addr) = metrics_addr {
        tracing::info!(addr = %metrics_addr, "serving metrics at /metrics");
    }

    let (stop, stopping) = watch::channel(());
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(());
    });
    let metrics_limits = crate::listener::Limits {
        max_connections: crate::listener::METRICS_MAX_CONNECTIONS,
        ..limits
    };
    let serve_metrics = async {
        if let Some(metrics_listener) = metrics_listener {
            crate::listener::serve(
                metrics_listener,
                metrics_router,
                metrics_limits,
                stopping.clone(),
            )
            .await;
        }
    };
    tokio::join!(
        crate::listener::serve(listener, router, limits, stopping.clone()),
        serve_metrics
    );
    signals.abort();

    maintenance.abort();
    key_reload.abort();
    if let Some(feed) = feed {
        feed.abort();
    }
    // The last requests' access lines, before the line that says it stopped.
    crate::access_log::flush();
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}

/// Re-reads the signing keys every `--key-refresh`, so a rotation done by
/// `tessera keys rotate` (or another instance) is picked up without a restart.
async fn reload_keys(app: AppState) {
    let every = std::time::Duration::from_millis(
        app.settings.key_refresh.whole_milliseconds().max(100) as u64,
    );
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = app.keys.reload(crate::handlers::now()).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "reloading signing keys failed; keeping the current ones");
        }
    }
}

/// Periodic housekeeping: drop ended sessions and stale failure counters, and
/// keep the metrics histograms bounded.
async fn maintain(app: AppState) {
    let mut tick = tokio::time::interval(telemetry::MAINTENANCE_EVERY);
    loop {
        tick.tick().await;
        let now = crate::handlers::now();
        // Ended sessions stay a while so that a revoked session's access
        // tokens remain refused until they would have expired anyway.
        let keep = app.settings.access_ttl.max(time::Duration::hours(1));
        if let Err(e) = app.stores.sessions.purge_sessions(now - keep).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "purging sessions failed");
        }
        let window = tessera_core::throttle::longest_window();
        if let Err(e) = app.stores.refresh.purge_refresh(now).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "purging refresh tokens failed");
        }
        if let Err(e) = app.stores.throttle.purge_failures(now - window).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "purging failure counters failed");
        }
        if let Some(handle) = &app.metrics {
            telemetry::upkeep(handle);
        }
    }
}
