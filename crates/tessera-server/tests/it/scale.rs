//! Scale-out: several instances sharing PostgreSQL and Redis, and what
//! happens when an engine fails. Reads `TESSERA_TEST_DATABASE_URL` and
//! `TESSERA_TEST_REDIS_URL`; skipped, and counted as skipped by `scripts/test`,
//! when either is unset (CI fails instead).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;
use tessera_store_postgres::{PoolOptions, PostgresStore};
use tessera_store_redis::RedisStore;

use crate::support::*;

/// A schema and a key prefix of this test's own, dropped at the end.
pub(crate) struct Shared {
    db_url: String,
    redis_url: String,
    schema: String,
    prefix: String,
    master_key: String,
}

impl Shared {
    pub(crate) fn new(name: &str) -> Option<Self> {
        let [db_url, redis_url] =
            <[String; 2]>::try_from(tessera_store::conformance::backend_urls(
                &["TESSERA_TEST_DATABASE_URL", "TESSERA_TEST_REDIS_URL"],
                name,
            )?)
            .ok()?;
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Some(Self {
            db_url,
            redis_url,
            schema: format!("tessera_scale_{id}"),
            prefix: format!("tessera-scale-{id}"),
            // Per process (tests in parallel runs differ), and as varied as
            // a generated key: a predictable one is refused.
            master_key: (1..=4u64)
                .map(|i| {
                    let seed = u64::from(std::process::id()).wrapping_add(i);
                    format!("{:016x}", seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                })
                .collect(),
        })
    }

    /// PostgreSQL alone: every store in the database, no Redis.
    pub(crate) fn args_without_redis(&self) -> Vec<String> {
        let mut args = self.args();
        let at = args.iter().position(|a| a == "--redis").unwrap();
        args.drain(at..at + 4);
        args
    }

    /// PostgreSQL for users and keys, Redis for the rest.
    pub(crate) fn args(&self) -> Vec<String> {
        [
            "--database",
            &self.db_url,
            "--database-schema",
            &self.schema,
            "--redis",
            &self.redis_url,
            "--redis-prefix",
            &self.prefix,
            "--master-key",
            &self.master_key,
            "--key-refresh",
            "1s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    async fn start(&self) -> Server {
        Server::start_with(
            BIN,
            Options {
                args: self.args(),
                ..Options::default()
            },
        )
        .await
    }

    /// Runs `body`, then drops the schema and the keys whether it passed or
    /// failed, then passes the failure on.
    pub(crate) async fn run<F, Fut>(self, body: F)
    where
        F: FnOnce(std::sync::Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let shared = std::sync::Arc::new(self);
        let outcome = tokio::spawn(body(shared.clone())).await;
        shared.cleanup().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    async fn cleanup(&self) {
        let pg = PostgresStore::open(&self.db_url, Some(&self.schema), PoolOptions::default())
            .await
            .unwrap();
        pg.drop_schema().await.unwrap();
        RedisStore::open(&self.redis_url, &self.prefix)
            .await
            .unwrap()
            .delete_all()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn three_instances_behind_one_address_share_everything() {
    let Some(shared) = Shared::new("three_instances") else {
        return;
    };
    shared.run(three_instances).await;
}

async fn three_instances(shared: std::sync::Arc<Shared>) {
    let (a, b, c) = (
        shared.start().await,
        shared.start().await,
        shared.start().await,
    );

    // Register on A, session login on B, /v1/me on C.
    let name = unique("scale");
    register(&a, &name).await;
    let login = login(&b, &name).await;
    let (status, me) = call(&c, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["username"], name.as_str());

    // Token login on C, refresh on A, reuse of the spent token on B.
    let first = tokens(&c, &name).await;
    let (status, second) = call(
        &a,
        Method::POST,
        "/v1/tokens/refresh",
        HeaderMap::new(),
        Some(&json!({ "refresh_token": first["refresh_token"] })),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let got = call(
        &b,
        Method::POST,
        "/v1/tokens/refresh",
        HeaderMap::new(),
        Some(&json!({ "refresh_token": first["refresh_token"] })),
    )
    .await;
    assert_error(&got, 401, "refresh_token_reused");
    // On B at once; on A and C once the change feed has told them (each
    // keeps sessions in memory; see `cache.rs` for the bound).
    let feed = Duration::from_secs(2);
    for s in [&a, &b, &c] {
        refused_within(s, bearer(&second["access_token"]), feed).await;
    }

    // Logout on A is refused on A at once, and on B and C through the feed.
    let (status, _) = call(
        &a,
        Method::DELETE,
        "/v1/sessions/current",
        login.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        call(&a, Method::GET, "/v1/me", login.cookie_only(), None)
            .await
            .0,
        401
    );
    for s in [&b, &c] {
        refused_within(s, login.cookie_only(), feed).await;
    }

    // A rotation with the command reaches all three within --key-refresh.
    let old = tokens(&b, &name).await;
    let mut rotate = Command::new(BIN);
    rotate.args(["keys", "rotate"]).args(shared.args());
    let out = rotate.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for s in [&a, &b, &c] {
        let fresh = tokens(s, &name).await;
        assert_ne!(
            part(fresh["access_token"].as_str().unwrap(), 0)["kid"],
            part(old["access_token"].as_str().unwrap(), 0)["kid"],
            "instance {} still signs with the old key",
            s.base()
        );
        assert_eq!(
            call(s, Method::GET, "/v1/me", bearer(&old["access_token"]), None)
                .await
                .0,
            200
        );
        assert_eq!(
            call(
                s,
                Method::GET,
                "/v1/me",
                bearer(&fresh["access_token"]),
                None
            )
            .await
            .0,
            200
        );
        let (_, ready) = call(s, Method::GET, "/readyz", HeaderMap::new(), None).await;
        assert_eq!(ready["checks"], json!({ "database": "ok", "redis": "ok" }));
    }
}

#[tokio::test]
async fn instances_sharing_a_database_need_the_same_master_key() {
    let Some(shared) = Shared::new("master_key") else {
        return;
    };
    shared.run(same_master_key).await;
}

async fn same_master_key(shared: std::sync::Arc<Shared>) {
    let a = shared.start().await;
    register(&a, &unique("mk")).await;
    let run = |args: Vec<String>| {
        let out = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut wrong = shared.args();
    let at = wrong.iter().position(|a| a == "--master-key").unwrap();
    wrong[at + 1] = "c4e8a0f2b6d1e9a3c7f5b2d8e0a4c6f9b1d3e7a5c2f8b0d6e4a9c1f7b3d5e2a8".to_owned();
    let (code, stderr) = run(wrong);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("master_key") && stderr.contains("decrypt"),
        "{stderr}"
    );

    let mut missing = shared.args();
    missing.drain(at..at + 2);
    let (code, stderr) = run(missing);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("master_key"), "{stderr}");
    drop(a);
}

/// A Redis server of the test's own, on its own port, persisting every write.
struct OwnRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start(port: u16, dir: tempfile::TempDir) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH for this test: run scripts/setup-test-deps");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.dir
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_stopped_redis_gives_503_quickly_and_tessera_recovers_without_restart() {
    let port = free_port();
    let redis = OwnRedis::start(port, tempfile::tempdir().unwrap());
    let server = start_with_args(&["--redis", &redis.url()]).await;
    let (name, login) = user_with_session(&server, "redisdown").await;
    let tokens = tokens(&server, &name).await;
    assert_eq!(
        call(&server, Method::GET, "/v1/me", login.cookie_only(), None)
            .await
            .0,
        200
    );

    let dir = redis.stop();
    let started = Instant::now();
    let got = call(&server, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_error(&got, 503, "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // A token is never accepted without its revocation check.
    let got = call(
        &server,
        Method::GET,
        "/v1/me",
        bearer(&tokens["access_token"]),
        None,
    )
    .await;
    assert_error(&got, 503, "unavailable");
    let got = call(
        &server,
        Method::POST,
        "/v1/sessions",
        HeaderMap::new(),
        Some(&json!({ "username": name, "password": PASSWORD })),
    )
    .await;
    assert_error(&got, 503, "unavailable");
    let (status, ready) = call(&server, Method::GET, "/readyz", HeaderMap::new(), None).await;
    assert_eq!(status, 503);
    assert_eq!(
        ready["checks"],
        json!({ "database": "ok", "redis": "unavailable" })
    );
    assert_eq!(
        call(&server, Method::GET, "/healthz", HeaderMap::new(), None)
            .await
            .0,
        200
    );

    // Redis comes back on the same port with its data: tessera recovers.
    let redis = OwnRedis::start(port, dir);
    let started = Instant::now();
    loop {
        let (status, _) = call(&server, Method::GET, "/readyz", HeaderMap::new(), None).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "tessera did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        call(&server, Method::GET, "/v1/me", login.cookie_only(), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &server,
            Method::GET,
            "/v1/me",
            bearer(&tokens["access_token"]),
            None
        )
        .await
        .0,
        200
    );
    drop(server);
    drop(redis.stop());
}

/// Input no account or session can have (a NUL byte, 60 KB of text) gets a
/// `4xx` and reaches no store (issue 8, item 7: PostgreSQL answered `500`).
async fn impossible_input_is_refused(server: &Server) {
    let name = unique("nul");
    register(server, &name).await;
    let bearer = bearer(&tokens(server, &name).await["access_token"]);
    for username in [
        format!("{name}\u{0}"),
        "\u{0}".repeat(8),
        "x".repeat(60_000),
    ] {
        for path in ["/v1/sessions", "/v1/tokens"] {
            let (status, body) = call(
                server,
                Method::POST,
                path,
                HeaderMap::new(),
                Some(&json!({ "username": username, "password": PASSWORD })),
            )
            .await;
            assert_eq!(status, 401, "{path}: {body}");
            assert_eq!(body["error"], "invalid_credentials");
        }
        let (status, _) = call(
            server,
            Method::POST,
            "/v1/users",
            HeaderMap::new(),
            Some(&json!({ "username": username, "password": PASSWORD })),
        )
        .await;
        assert_eq!(status, 400);
    }
    for id in ["ses_%00x", "ses_%00AAAAAAAAAAAAAAAAAAAAA", "x"] {
        let path = format!("/v1/sessions/{id}");
        let (status, body) = call(server, Method::DELETE, &path, bearer.clone(), None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    // The account itself was never at stake: it still logs in.
    assert_eq!(tokens(server, &name).await["token_type"], "Bearer");
}

#[tokio::test]
async fn impossible_input_gets_a_4xx_on_sqlite() {
    impossible_input_is_refused(&start().await).await;
}

#[tokio::test]
async fn impossible_input_gets_a_4xx_on_postgres_and_redis() {
    let Some(shared) = Shared::new("impossible_input") else {
        return;
    };
    shared
        .run(|shared| async move {
            // PostgreSQL alone (every store in it), then with Redis.
            let alone = Server::start_with(
                BIN,
                Options {
                    args: shared.args_without_redis(),
                    ..Options::default()
                },
            )
            .await;
            impossible_input_is_refused(&alone).await;
            impossible_input_is_refused(&shared.start().await).await;
        })
        .await;
}

/// 2000 logins with 60 KB random usernames grow the database by less than
/// 1 MB (issue 8, item 3: the username was recorded before it was checked).
#[tokio::test]
async fn impossible_usernames_do_not_grow_the_database() {
    let server = start().await;
    let size = |s: &Server| {
        ["", "-wal", "-shm"]
            .iter()
            .map(|ext| {
                let mut path = s.db_path().into_os_string();
                path.push(ext);
                std::fs::metadata(path).map_or(0, |m| m.len())
            })
            .sum::<u64>()
    };
    let before = size(&server);
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..2000u32 {
        let name: String = format!("{i:05}").repeat(12_000);
        let req = server
            .client()
            .post(server.url("/v1/sessions"))
            .json(&json!({ "username": name, "password": PASSWORD }));
        logins.spawn(async move { req.send().await.unwrap().status().as_u16() });
        if logins.len() >= 16 {
            let status = logins.join_next().await.unwrap().unwrap();
            assert!(status == 401 || status == 429, "{status}");
        }
    }
    for status in logins.join_all().await {
        assert!(status == 401 || status == 429, "{status}");
    }
    let grown = size(&server).saturating_sub(before);
    assert!(grown < 1 << 20, "the database grew by {grown} bytes");
}
