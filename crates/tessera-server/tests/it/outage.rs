//! A PostgreSQL that stops while tessera serves: `503 unavailable` within
//! seconds (never a `2xx` that would accept a credential it cannot check,
//! never a `500`), `/readyz` false, and recovery without a restart when it
//! is back.
//!
//! The shared PostgreSQL on 5432 serves other tests, so this test runs a
//! PostgreSQL of its own (`initdb` and `postgres` from Debian's
//! `postgresql`, as the unprivileged user `nobody`, since PostgreSQL refuses
//! to run as root), on a free port, in a temporary directory, exactly as the
//! Redis failure test in `scale.rs` runs a `redis-server`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::scale::free_port;
use crate::support::*;

/// The unprivileged user the private PostgreSQL runs as.
const PG_USER: &str = "nobody";

/// The newest `/usr/lib/postgresql/N/bin`, where Debian puts the server.
fn pg_bin(program: &str) -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((n, bin))
        })
        .collect();
    versions.sort();
    let (_, bin) = versions.pop().expect(
        "PostgreSQL's server programs (/usr/lib/postgresql/N/bin/initdb) are needed for this \
         test: run scripts/setup-test-deps",
    );
    bin.join(program)
}

/// `program` as `nobody`, when the tests run as root (PostgreSQL refuses
/// root); as the current user otherwise.
fn as_pg_user(program: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            format!("--reuid={PG_USER}"),
            format!("--regid={}", gid_of(PG_USER)),
            "--clear-groups".to_owned(),
        ])
        .arg(pg_bin(program));
        cmd
    } else {
        Command::new(pg_bin(program))
    }
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

fn uid_gid(user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        .unwrap_or_else(|| panic!("no user {user} in /etc/passwd"))
}

fn gid_of(user: &str) -> u32 {
    uid_gid(user).1
}

/// A PostgreSQL server of the test's own.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl OwnPostgres {
    /// `initdb` in a new temporary directory (owned by the PostgreSQL user),
    /// then start it on a free port.
    fn init_and_start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let (uid, gid) = uid_gid(PG_USER);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let out = as_pg_user("initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .env("LC_ALL", "C")
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            dir,
            port: free_port(),
            child: None,
        };
        pg.start();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Starts the server on its port and waits until it accepts queries.
    fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .unwrap();
        let child = as_pg_user("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let ready = Command::new(pg_bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .unwrap();
            if ready.success() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (a fast shutdown, SIGINT: every connection is closed) and
    /// waits until the process is gone.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("postgres is running");
        tessera_testkit::send_signal(child.id(), tessera_testkit::Signal::SIGINT);
        let status = child.wait().unwrap();
        assert!(status.success(), "postgres stopped with {status}");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A request that must be refused with `503 unavailable` within `limit`.
async fn unavailable(
    server: &Server,
    what: &str,
    method: Method,
    path: &str,
    h: HeaderMap,
    body: Option<&Value>,
) {
    let limit = Duration::from_secs(10);
    let started = Instant::now();
    let got = call(server, method, path, h, body).await;
    eprintln!("{what}: {} after {:?}", got.0, started.elapsed());
    assert_eq!(got.0, 503, "{what} with PostgreSQL down: {}", got.1);
    assert_error(&got, 503, "unavailable");
    assert!(
        started.elapsed() < limit,
        "{what} took {:?} to fail",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stopped_postgres_gives_503_quickly_and_tessera_recovers_without_restart() {
    let mut pg = OwnPostgres::init_and_start();
    let server = start_with_args(&[
        "--database",
        &pg.url(),
        "--master-key",
        "c4e8a0f2b6d1e9a3c7f5b2d8e0a4c6f9b1d3e7a5c2f8b0d6e4a9c1f7b3d5e2a8",
    ])
    .await;
    let (name, login) = user_with_session(&server, "pgdown").await;
    let tokens = tokens(&server, &name).await;
    let access = bearer(&tokens["access_token"]);
    let (status, ready) = call(&server, Method::GET, "/readyz", HeaderMap::new(), None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"], json!({ "database": "ok" }));

    pg.stop();

    let creds = json!({ "username": name, "password": PASSWORD });
    unavailable(
        &server,
        "a cookie session",
        Method::GET,
        "/v1/me",
        login.cookie_only(),
        None,
    )
    .await;
    // A token is never accepted without its session check.
    unavailable(
        &server,
        "a bearer token",
        Method::GET,
        "/v1/me",
        access.clone(),
        None,
    )
    .await;
    unavailable(
        &server,
        "a session login",
        Method::POST,
        "/v1/sessions",
        HeaderMap::new(),
        Some(&creds),
    )
    .await;
    unavailable(
        &server,
        "a token login",
        Method::POST,
        "/v1/tokens",
        HeaderMap::new(),
        Some(&creds),
    )
    .await;
    unavailable(
        &server,
        "a refresh",
        Method::POST,
        "/v1/tokens/refresh",
        HeaderMap::new(),
        Some(&json!({ "refresh_token": tokens["refresh_token"] })),
    )
    .await;
    unavailable(
        &server,
        "a registration",
        Method::POST,
        "/v1/users",
        HeaderMap::new(),
        Some(&json!({ "username": unique("pgdown"), "password": PASSWORD })),
    )
    .await;
    unavailable(
        &server,
        "a logout",
        Method::DELETE,
        "/v1/sessions/current",
        login.with_csrf(),
        None,
    )
    .await;
    let (status, ready) = call(&server, Method::GET, "/readyz", HeaderMap::new(), None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"], json!({ "database": "unavailable" }));
    assert_eq!(
        call(&server, Method::GET, "/healthz", HeaderMap::new(), None)
            .await
            .0,
        200
    );

    // PostgreSQL comes back on the same port with its data: tessera, never
    // restarted, recovers by itself.
    pg.start();
    let started = Instant::now();
    loop {
        let (status, _) = call(&server, Method::GET, "/readyz", HeaderMap::new(), None).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tessera did not recover; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let me = call(&server, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_eq!(me.0, 200, "the cookie session after recovery: {}", me.1);
    let me = call(&server, Method::GET, "/v1/me", access, None).await;
    assert_eq!(me.0, 200, "the bearer token after recovery: {}", me.1);
    let fresh = login_as(&server, &name, PASSWORD).await;
    assert_eq!(
        call(&server, Method::GET, "/v1/me", fresh.cookie_only(), None)
            .await
            .0,
        200
    );
    // The logout refused while PostgreSQL was down did nothing; now it works.
    let (status, body) = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        login.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        call(&server, Method::GET, "/v1/me", login.cookie_only(), None)
            .await
            .0,
        401
    );
    drop(server);
    pg.stop();
}
