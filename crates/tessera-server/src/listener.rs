//! Accepting and driving HTTP connections, with the limits that keep slow
//! or idle clients from holding the server.
//!
//! `axum::serve` offers no limit at all: a client that sends one header byte
//! every few seconds keeps its connection (and a file descriptor) for as
//! long as it likes, and enough of them exhaust the descriptors, after which
//! nobody is served. So tessera drives each connection with hyper itself:
//!
//! - **Header deadline** (`--header-read-timeout`): hyper's
//!   `header_read_timeout`, which runs whenever the connection waits for a
//!   request head, so it also bounds an idle kept-alive connection.
//! - **Body deadline** (`--body-read-timeout`): the router reads the body
//!   before routing, within that time in total ([`crate::router`]).
//! - **A connection cap** (`--max-connections`, lowered to what the
//!   open-file limit allows, which [`raise_open_file_limit`] raises to the
//!   hard limit at start). A connection accepted beyond the cap closes the
//!   connection that has waited longest for its client (for a request head
//!   or a body): under a slow-client attack that is an attacker, and a new
//!   client gets its slot at once. When every connection has a request in a
//!   handler, none is closed: the new one waits for a handler to finish, and
//!   those after it wait in the kernel's backlog.
//!
//! Handlers still get `ConnectInfo<SocketAddr>`, and SIGINT/SIGTERM still
//! stop the accepting and let the requests in flight finish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt as _;

/// File descriptors kept for everything but client connections: standard
/// streams, the database files and pools, Redis, the metrics listener and
/// its connections, the runtime's own.
const RESERVED_FILES: u64 = 128;

/// How many connections the metrics listener keeps open at once.
pub const METRICS_MAX_CONNECTIONS: usize = 16;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a request head, and on an idle connection.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// One connection's state, shared by its task, its requests and the accept
/// loop.
#[derive(Debug)]
struct ConnState {
    /// When it started waiting for its client, in milliseconds since
    /// [`epoch`] plus one; `0` while a handler works on one of its requests.
    waiting_since: AtomicU64,
    /// Told when the accept loop closes the connection to make room.
    evict: Notify,
}

/// A request's connection, in the request's extensions: the router's body
/// reading says with it when the server is waiting for the client.
#[derive(Debug, Clone)]
pub struct ConnHandle(Arc<ConnState>);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl ConnHandle {
    fn new() -> Self {
        let handle = Self(Arc::new(ConnState {
            waiting_since: AtomicU64::new(0),
            evict: Notify::new(),
        }));
        handle.client_turn();
        handle
    }

    /// The server now waits for the client (a request head or a body).
    pub fn client_turn(&self) {
        let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.0.waiting_since.store(ms + 1, Ordering::Relaxed);
    }

    /// A handler works on a request of this connection.
    pub fn server_turn(&self) {
        self.0.waiting_since.store(0, Ordering::Relaxed);
    }
}

/// The open connections of one listener.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, ConnHandle>>,
}

impl Registry {
    fn add(&self, handle: ConnHandle) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, handle);
        id
    }

    fn remove(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Closes the connection that has waited longest for its client, if
    /// one waits; `false` when every connection has a request in a handler.
    fn evict_one(&self) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let victim = conns
            .iter()
            .filter_map(|(id, c)| {
                let since = c.0.waiting_since.load(Ordering::Relaxed);
                (since != 0).then_some((since, *id))
            })
            .min();
        let Some((_, id)) = victim else { return false };
        // Out of the registry now, so the next eviction picks another one.
        if let Some(handle) = conns.remove(&id) {
            handle.0.evict.notify_one();
        }
        true
    }
}

/// Raises the soft limit on open files to the hard limit, so the connection
/// cap rather than the descriptors decides how many clients are served.
/// Returns the soft limit in force, if it can be read.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        // Linux refuses an infinite open-file limit; 2^20 is its usual maximum.
        let target = if hard == RLIM_INFINITY { 1 << 20 } else { hard };
        if soft >= target {
            return Some(soft);
        }
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = target, "raised the open-file limit");
                Some(target)
            }
            Err(e) => {
                tracing::warn!(limit = soft, error = %e, "cannot raise the open-file limit");
                Some(soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap in force: `wanted`, or fewer when the open-file limit
/// leaves room for fewer beside the descriptors everything else needs.
pub fn connection_cap(wanted: usize, open_files: Option<u64>, database_pool: u32) -> usize {
    let Some(limit) = open_files else {
        return wanted;
    };
    let reserved = RESERVED_FILES + u64::from(database_pool);
    let room = usize::try_from(limit.saturating_sub(reserved))
        .unwrap_or(usize::MAX)
        .max(1);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = limit,
            using = room,
            "the open-file limit allows fewer connections than --max-connections; \
             raise the limit (ulimit -n, LimitNOFILE=) to serve more"
        );
    }
    wanted.min(room)
}

/// A warning at most once a minute, for events an attack repeats.
struct Every {
    last: Option<Instant>,
}

impl Every {
    fn due(&mut self) -> bool {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

/// Whether an accept error concerns only the connection being accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Serves `router` (an axum `Router`, or [`crate::router::router`]'s stack
/// around one) on `listener` within `limits` until `shutdown` changes
/// (or its sender is dropped), then lets the open connections finish their
/// requests in flight and returns when every connection is closed.
pub async fn serve<S>(
    listener: TcpListener,
    router: S,
    limits: Limits,
    mut shutdown: watch::Receiver<()>,
) where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let registry = Arc::new(Registry::default());
    let cap = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(cap));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut full_warning = Every { last: None };
    let mut error_warning = Every { last: None };
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors, most likely: make room, and retry.
                    if error_warning.due() {
                        tracing::warn!(error = %e, "accepting a connection failed");
                    }
                    registry.evict_one();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if full_warning.due() {
                    tracing::warn!(
                        max_connections = cap,
                        "connection cap reached; closing the connections that wait longest \
                         for their clients"
                    );
                }
                registry.evict_one();
                tokio::select! {
                    _ = shutdown.changed() => break,
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let handle = ConnHandle::new();
        let id = registry.add(handle.clone());
        let registry = registry.clone();
        let router = router.clone();
        let http = http.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let state = handle.0.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(remote));
                req.extensions_mut().insert(handle.clone());
                handle.server_turn();
                let handle = handle.clone();
                let router = router.clone();
                async move {
                    let res = router.oneshot(req).await;
                    handle.client_turn();
                    res
                }
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%remote, error = %e, "connection ended");
                        }
                        break;
                    }
                    () = state.evict.notified() => {
                        tracing::debug!(%remote, "closed to make room for a new connection");
                        break;
                    }
                    _ = shutdown.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            registry.remove(id);
        });
    }
    drop(listener);
    // Every connection holds a slot until it is closed.
    let _ = slots
        .acquire_many(u32::try_from(cap).unwrap_or(u32::MAX))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_that_waited_longest_is_evicted_and_busy_ones_never() {
        let registry = Registry::default();
        let old = ConnHandle::new();
        std::thread::sleep(Duration::from_millis(5));
        let busy = ConnHandle::new();
        busy.server_turn();
        let young = ConnHandle::new();
        young.client_turn();
        let old_id = registry.add(old);
        registry.add(busy);
        let young_id = registry.add(young);
        assert!(registry.evict_one());
        let left: Vec<u64> = registry.conns.lock().unwrap().keys().copied().collect();
        assert!(!left.contains(&old_id), "{left:?}");
        assert!(registry.evict_one());
        assert!(!registry.conns.lock().unwrap().contains_key(&young_id));
        // Only the busy one is left, and it is never evicted.
        assert!(!registry.evict_one());
        assert_eq!(registry.conns.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_cap_leaves_room_for_other_files() {
        assert_eq!(connection_cap(10_000, Some(1024), 10), 1024 - 138);
        assert_eq!(connection_cap(100, Some(1024), 10), 100);
        assert_eq!(connection_cap(100, None, 10), 100);
        assert_eq!(connection_cap(100, Some(50), 10), 1);
    }
}
