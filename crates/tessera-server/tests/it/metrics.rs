//! The Prometheus metrics (issue 10, item 6): every family moves when its
//! event happens, and the exposition passes `promtool check metrics`.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

const ADMIN_KEY: &str = "the admin key for metrics tests";

pub(crate) async fn scrape(server: &Server) -> String {
    let res = server
        .client()
        .get(server.metrics_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// Sum of every sample of `family` whose labels contain all of `labels`
/// (`name="value"` pairs), histograms by their `_count`.
pub(crate) fn total(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let name = name_labels.split('{').next()?;
            let wanted = name == family || name == format!("{family}_count");
            (wanted && labels.iter().all(|p| name_labels.contains(p)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Runs `promtool check metrics` on `text`: its linter checks names, units,
/// types and help texts against the Prometheus conventions.
fn promtool(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool (Debian's prometheus) is missing ({e}); run scripts/setup-test-deps")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_family_moves_with_its_event_and_passes_promtool() {
    let server = start_with_args(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--admin-key",
        ADMIN_KEY,
        "--key-refresh",
        "1s",
    ])
    .await;
    let before = scrape(&server).await;

    let (name, session) = user_with_session(&server, "metered").await;
    let (status, _) = call(&server, Method::GET, "/v1/me", session.cookie_only(), None).await;
    assert_eq!(status, 200);
    let victim = unique("metered_victim");
    register(&server, &victim).await;
    for _ in 0..11 {
        server
            .post_json(
                "/v1/sessions",
                &json!({ "username": victim, "password": "not the password" }),
            )
            .await;
    }
    let other = login(&server, &name).await;
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/sessions/{}", other.session_id),
        session.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        session.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let tokens_user = unique("metered_tokens");
    register(&server, &tokens_user).await;
    let grant = tokens(&server, &tokens_user).await;
    let (status, _) = call(
        &server,
        Method::GET,
        "/v1/me",
        bearer(&grant["access_token"]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let refreshed = server
        .post_json(
            "/v1/tokens/refresh",
            &json!({ "refresh_token": grant["refresh_token"] }),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    let reused = server
        .post_json(
            "/v1/tokens/refresh",
            &json!({ "refresh_token": grant["refresh_token"] }),
        )
        .await;
    assert_eq!(reused.status(), 401);
    let grant = tokens(&server, &tokens_user).await;
    let res = server
        .post_json(
            "/v1/tokens/revoke",
            &json!({ "token": grant["access_token"] }),
        )
        .await;
    assert_eq!(res.status(), 200);
    tokens(&server, &tokens_user).await;
    let (status, body) = admin(
        &server,
        ADMIN_KEY,
        &format!("/v1/admin/users/{tokens_user}/disable"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A rotation by the command line reaches the server at its next reload.
    let db = format!("sqlite://{}", server.db_path().display());
    let (code, out, err) = crate::cli::run(&["keys", "rotate", "--database", &db], &[], None);
    assert_eq!(code, 0, "{out}{err}");
    let mut after = scrape(&server).await;
    for _ in 0..100 {
        if total(
            &after,
            "tessera_key_reloads_total",
            &["outcome=\"rotated\""],
        ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = scrape(&server).await;
    }

    let moved: Vec<(&str, &[&str], f64, f64)> = [
        (
            "tessera_http_requests_total",
            &["route=\"/v1/me\"", "status=\"200\""][..],
        ),
        (
            "tessera_http_request_duration_seconds",
            &["route=\"/v1/sessions\""],
        ),
        (
            "tessera_logins_total",
            &["method=\"session\"", "outcome=\"invalid_credentials\""],
        ),
        (
            "tessera_logins_total",
            &["method=\"token\"", "outcome=\"success\""],
        ),
        ("tessera_authentications_total", &["method=\"bearer\""]),
        ("tessera_token_verifications_total", &[]),
        ("tessera_refreshes_total", &["outcome=\"rotated\""]),
        ("tessera_refreshes_total", &["outcome=\"reused\""]),
        ("tessera_sessions_ended_total", &["reason=\"logout\""]),
        ("tessera_sessions_ended_total", &["reason=\"revoked\""]),
        (
            "tessera_sessions_ended_total",
            &["reason=\"token_revoked\""],
        ),
        (
            "tessera_sessions_ended_total",
            &["reason=\"refresh_reused\""],
        ),
        (
            "tessera_sessions_ended_total",
            &["reason=\"user_disabled\""],
        ),
        (
            "tessera_throttled_attempts_total",
            &["limit=\"account_client\""],
        ),
        ("tessera_key_reloads_total", &["outcome=\"rotated\""]),
        ("tessera_registrations_total", &[]),
        ("tessera_tokens_issued_total", &["delivery=\"body\""]),
        ("tessera_auth_cache_requests_total", &["outcome=\"hit\""]),
        (
            "tessera_store_operation_duration_seconds",
            &["backend=\"sqlite\"", "operation=\"session_by_secret\""],
        ),
        (
            "tessera_store_operation_duration_seconds",
            &["backend=\"sqlite\"", "operation=\"record_failure\""],
        ),
    ]
    .iter()
    .map(|(family, labels)| {
        let (b, a) = (
            total(&before, family, labels),
            total(&after, family, labels),
        );
        (*family, *labels, b, a)
    })
    .collect();
    let still: Vec<_> = moved.iter().filter(|(.., b, a)| a <= b).collect();
    assert!(still.is_empty(), "families that did not move: {still:?}");
    for gauge in [
        "tessera_active_sessions",
        "tessera_password_hash_queue_depth",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(gauge)),
            "{gauge} missing:\n{after}"
        );
    }
    assert_eq!(total(&after, "tessera_auth_cache_feed_up", &[]), 1.0);
    promtool(&after);
}
