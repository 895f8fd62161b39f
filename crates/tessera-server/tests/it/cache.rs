//! The in-process session and user cache (`auth_cache`): served from memory,
//! and still never serving a revoked credential. Changes made by another
//! process arrive through the change feed: Redis pub/sub, PostgreSQL
//! `NOTIFY`, SQLite's `changes` table. Every server here runs with
//! `--auth-cache-ttl 5m`, so that only the feed can explain a prompt refusal.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::metrics::{scrape, total};
use crate::scale::Shared;
use crate::support::*;

/// How late a change may reach another instance in these tests. The feed
/// takes milliseconds; the rest is room for a busy two-core machine.
const BOUND: Duration = Duration::from_secs(2);

const ADMIN_KEY: &str = "an-admin-key-of-the-cache-tests";

fn cached(mut args: Vec<String>) -> Options {
    args.extend(
        [
            "--auth-cache-ttl",
            "5m",
            "--metrics-listen",
            "127.0.0.1:0",
            "--admin-key",
            ADMIN_KEY,
        ]
        .map(str::to_owned),
    );
    Options {
        args,
        ..Options::default()
    }
}

fn hits(metrics: &str) -> f64 {
    total(
        metrics,
        "tessera_auth_cache_requests_total",
        &["outcome=\"hit\""],
    )
}

/// Sends `h` to `/v1/me` on each server until each has answered once from
/// its cache, so that what follows is about cached entries.
async fn warm(servers: &[&Server], h: &reqwest::header::HeaderMap) {
    for s in servers {
        let before = hits(&scrape(s).await);
        for _ in 0..200 {
            assert_eq!(s.get("/v1/me", h.clone()).await.status(), 200);
            if hits(&scrape(s).await) > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            hits(&scrape(s).await) > before,
            "{}: the cache never answered",
            s.base()
        );
    }
}

/// Once refused, refused for good: 100 parallel requests, none served from
/// a copy that another request's read put back.
async fn stays_refused(server: &Server, h: &reqwest::header::HeaderMap) {
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let request = server.client().get(server.url("/v1/me")).headers(h.clone());
        all.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = all.join_next().await {
        assert_eq!(status.unwrap(), 401, "{}", server.base());
    }
}

async fn three_instances(args: Vec<String>) {
    let [a, b, c] = [
        Server::start_with(BIN, cached(args.clone())).await,
        Server::start_with(BIN, cached(args.clone())).await,
        Server::start_with(BIN, cached(args)).await,
    ];
    let name = unique("cached");
    register(&a, &name).await;

    // A cookie session, logged out on A.
    let session = login(&a, &name).await;
    warm(&[&a, &b, &c], &session.cookie_only()).await;
    let (status, _) = call(
        &a,
        Method::DELETE,
        "/v1/sessions/current",
        session.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        a.get("/v1/me", session.cookie_only()).await.status(),
        401,
        "the instance that logged out serves the old entry"
    );
    for s in [&b, &c] {
        let took = refused_within(s, session.cookie_only(), BOUND).await;
        eprintln!("logout on A refused on {} after {took:?}", s.base());
        stays_refused(s, &session.cookie_only()).await;
    }

    // An access token, revoked (RFC 7009) on B.
    let grant = tokens(&a, &name).await;
    let token = bearer(&grant["access_token"]);
    warm(&[&a, &b, &c], &token).await;
    let (status, _) = call(
        &b,
        Method::POST,
        "/v1/tokens/revoke",
        Default::default(),
        Some(&json!({ "token": grant["refresh_token"] })),
    )
    .await;
    assert_eq!(status, 200);
    for s in [&a, &c] {
        let took = refused_within(s, token.clone(), BOUND).await;
        eprintln!("revocation on B refused on {} after {took:?}", s.base());
        stays_refused(s, &token).await;
    }

    // A user disabled by an operator on C: every credential, everywhere.
    let session = login(&a, &name).await;
    let grant = tokens(&b, &name).await;
    let token = bearer(&grant["access_token"]);
    warm(&[&a, &b], &session.cookie_only()).await;
    warm(&[&a, &b], &token).await;
    let (status, body) = admin(&c, ADMIN_KEY, &format!("/v1/admin/users/{name}/disable")).await;
    assert_eq!(status, 200, "{body}");
    for s in [&a, &b] {
        refused_within(s, session.cookie_only(), BOUND).await;
        refused_within(s, token.clone(), BOUND).await;
    }

    // The lag of what arrived from elsewhere is measured.
    for s in [&a, &b, &c] {
        let m = scrape(s).await;
        assert!(
            total(&m, "tessera_auth_cache_invalidation_lag_seconds", &[]) >= 1.0,
            "{}: no lag recorded:\n{m}",
            s.base()
        );
        assert_eq!(total(&m, "tessera_auth_cache_feed_up", &[]), 1.0);
    }
}

#[tokio::test]
async fn a_revocation_on_one_instance_is_refused_on_the_others_through_redis() {
    let Some(shared) = Shared::new("cache_redis") else {
        return;
    };
    shared
        .run(|shared| async move { three_instances(shared.args()).await })
        .await;
}

#[tokio::test]
async fn a_revocation_on_one_instance_is_refused_on_the_others_through_postgres() {
    let Some(shared) = Shared::new("cache_postgres") else {
        return;
    };
    shared
        .run(|shared| async move { three_instances(shared.args_without_redis()).await })
        .await;
}

/// The command line writes the SQLite file a server is running on; the
/// server reads the `changes` table every 50 ms.
#[tokio::test]
async fn a_revocation_by_the_command_line_is_refused_by_a_server_on_sqlite() {
    let server = Server::start_with(BIN, cached(Vec::new())).await;
    let db = format!("sqlite://{}", server.db_path().display());
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--database", &db])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (name, session) = user_with_session(&server, "cli_cache").await;
    let grant = tokens(&server, &name).await;
    let token = bearer(&grant["access_token"]);
    warm(&[&server], &session.cookie_only()).await;
    warm(&[&server], &token).await;
    cli(&["user", "logout", &name]);
    let took = refused_within(&server, session.cookie_only(), BOUND).await;
    eprintln!("`tessera user logout` refused after {took:?}");
    refused_within(&server, token, BOUND).await;

    let session = login(&server, &name).await;
    warm(&[&server], &session.cookie_only()).await;
    cli(&["user", "disable", &name]);
    refused_within(&server, session.cookie_only(), BOUND).await;
    let m = scrape(&server).await;
    assert!(total(&m, "tessera_auth_cache_invalidation_lag_seconds", &[]) >= 2.0);
}

/// With `--auth-cache-ttl 0s` nothing is cached: every request reads the store.
#[tokio::test]
async fn a_zero_ttl_turns_the_cache_off() {
    let server =
        start_with_args(&["--auth-cache-ttl", "0s", "--metrics-listen", "127.0.0.1:0"]).await;
    let (_, session) = user_with_session(&server, "uncached").await;
    for _ in 0..5 {
        assert_eq!(
            server.get("/v1/me", session.cookie_only()).await.status(),
            200
        );
    }
    let m = scrape(&server).await;
    assert_eq!(hits(&m), 0.0, "{m}");
    assert!(
        total(
            &m,
            "tessera_store_operation_duration_seconds",
            &["operation=\"session_by_secret\""]
        ) >= 5.0
    );
}
