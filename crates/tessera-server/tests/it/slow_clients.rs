//! Slow clients do not hold the server: a connection that trickles its
//! request head or body is closed within its timeout, an idle one too, and
//! while hundreds of them attack a server whose open-file limit is low, a
//! new client's `/healthz` still answers within a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{BIN, Options, Server};

/// The timeouts the tests give the server, for headers and bodies alike.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How late after its timeout a slow connection may still be closed.
const MARGIN: Duration = Duration::from_millis(1500);
/// How often a slow client sends its next byte.
const TRICKLE: Duration = Duration::from_millis(200);

/// A server with 2 s header and body timeouts (set by environment variable),
/// and the other settings given.
async fn server(env: &[(&str, &str)], open_files: Option<u64>) -> Server {
    let mut vars = vec![
        ("TESSERA_HEADER_READ_TIMEOUT".to_owned(), "2s".to_owned()),
        ("TESSERA_BODY_READ_TIMEOUT".to_owned(), "2s".to_owned()),
    ];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Server::start_with(
        BIN,
        Options {
            env: vars,
            open_files,
            ..Options::default()
        },
    )
    .await
}

fn addr(server: &Server) -> String {
    server.base().trim_start_matches("http://").to_owned()
}

/// What a slow client sends first: a request head without its end, or a
/// whole head announcing a body that does not come.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slow {
    /// Connects and sends nothing.
    Idle,
    /// Sends a header line one byte at a time, never the blank line.
    Head,
    /// Sends a complete `POST /v1/sessions` head, then its body a byte at a time.
    Body,
}

/// How a slow connection ended.
struct Ended {
    /// From connect to the server closing it.
    after: Duration,
    /// What the server sent before closing.
    response: String,
}

/// Opens one slow connection and trickles until the server closes it or
/// `give_up` passes. `None` if the connection could not be opened or was
/// still open at `give_up`.
async fn slow_connection(addr: &str, kind: Slow, give_up: Duration) -> Option<Ended> {
    let start = Instant::now();
    let mut conn = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let first = match kind {
        Slow::Idle => String::new(),
        Slow::Head => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: "),
        Slow::Body => format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: 4000\r\n\r\n{{\"username\": \""
        ),
    };
    if conn.write_all(first.as_bytes()).await.is_err() {
        return Some(Ended {
            after: start.elapsed(),
            response: String::new(),
        });
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(TRICKLE);
    tick.tick().await;
    loop {
        let left = give_up.checked_sub(start.elapsed())?;
        tokio::select! {
            read = conn.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if kind != Slow::Idle => {
                if conn.write_all(b"a").await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep(left) => return None,
        }
    }
    Some(Ended {
        after: start.elapsed(),
        response: String::from_utf8_lossy(&response).into_owned(),
    })
}

/// `GET /healthz` on a new connection: the status line, and how long the
/// whole exchange took, or `None` if it did not finish within `limit`.
async fn fresh_healthz(addr: &str, limit: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    let exchange = async {
        let mut conn = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        conn.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    let response = tokio::time::timeout(limit, exchange).await.ok()??;
    let status = response.lines().next().unwrap_or_default().to_owned();
    Some((status, start.elapsed()))
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_within_their_timeout() {
    let server = server(&[], None).await;
    let addr = addr(&server);
    let give_up = TIMEOUT + MARGIN;
    let (idle, head, body) = tokio::join!(
        slow_connection(&addr, Slow::Idle, give_up),
        slow_connection(&addr, Slow::Head, give_up),
        slow_connection(&addr, Slow::Body, give_up),
    );
    for (kind, ended) in [
        (Slow::Idle, &idle),
        (Slow::Head, &head),
        (Slow::Body, &body),
    ] {
        let ended = ended
            .as_ref()
            .unwrap_or_else(|| panic!("{kind:?}: still open {give_up:?} after connecting"));
        // Closed by its timeout, not before.
        assert!(
            ended.after >= TIMEOUT - Duration::from_millis(100),
            "{kind:?}: closed after {:?}, before its timeout",
            ended.after
        );
    }
    // A late body gets an answer that says so.
    let body = body.unwrap().response;
    assert!(body.starts_with("HTTP/1.1 408"), "{body}");
    assert!(body.contains("\"error\":\"request_timeout\""), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("connection: close"),
        "{body}"
    );
    // The server is fine afterwards.
    let (status, _) = fresh_healthz(&addr, Duration::from_secs(1)).await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn alone_healthz_answers_while_hundreds_of_slow_clients_attack() {
    // An open-file limit of 256 (soft and hard: raising it cannot help),
    // a cap of 100 connections, and 300 slow clients that reconnect as soon
    // as they are closed: more than the descriptors and more than the cap.
    let server = server(&[("TESSERA_MAX_CONNECTIONS", "100")], Some(256)).await;
    let addr = addr(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for i in 0..300 {
        let kind = if i % 6 == 0 { Slow::Body } else { Slow::Head };
        let (addr, stop) = (addr.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mut lives = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match slow_connection(&addr, kind, Duration::from_secs(8)).await {
                    Some(ended) => lives.push(ended.after),
                    // Never closed, or never opened: the attack holds.
                    None => lives.push(Duration::MAX),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            lives
        }));
    }
    // Let the attack fill the server, then ask for /healthz on new
    // connections across more than two timeouts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut probes = Vec::new();
    for _ in 0..16 {
        probes.push(fresh_healthz(&addr, Duration::from_secs(1)).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut lives = Vec::new();
    for attacker in attackers {
        lives.extend(attacker.await.unwrap());
    }
    let answered = probes
        .iter()
        .filter(|p| matches!(p, Some((status, _)) if status == "HTTP/1.1 200 OK"))
        .count();
    assert_eq!(
        answered,
        probes.len(),
        "during the attack, /healthz on a new connection answered {answered} of {} times \
         within 1 s: {probes:?}",
        probes.len()
    );
    // Every slow connection was closed, within its timeout plus the margin
    // (or sooner, to make room).
    let longest = lives.iter().max().copied().unwrap();
    assert!(
        longest <= TIMEOUT + MARGIN,
        "a slow connection lived {longest:?} ({} connections)",
        lives.len()
    );
    assert!(lives.len() >= 300, "{} connections", lives.len());
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["config", "check"])
        .current_dir(dir.path())
        .env_remove("TESSERA_HEADER_READ_TIMEOUT")
        .env_remove("TESSERA_BODY_READ_TIMEOUT")
        .env_remove("TESSERA_MAX_CONNECTIONS")
        .env_remove("TESSERA_METRICS_LISTEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"),
    )
    .unwrap();
    for (line, row) in [
        (
            "header_read_timeout = \"10s\"",
            "| `--header-read-timeout DUR` | `TESSERA_HEADER_READ_TIMEOUT` | `header_read_timeout` | `10s` |",
        ),
        (
            "body_read_timeout = \"10s\"",
            "| `--body-read-timeout DUR` | `TESSERA_BODY_READ_TIMEOUT` | `body_read_timeout` | `10s` |",
        ),
        (
            "max_connections = 10000",
            "| `--max-connections N` | `TESSERA_MAX_CONNECTIONS` | `max_connections` | `10000` |",
        ),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line} not in:\n{stdout}"
        );
        assert!(doc.contains(row), "docs/api.md lacks the row {row}");
    }
}
