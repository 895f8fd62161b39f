//! The OpenAPI document against the running server: schemathesis (from PyPI,
//! pinned, in `target/schemathesis-venv`, which `scripts/setup-test-deps`
//! creates; `TESSERA_SCHEMATHESIS_VENV` overrides the path) reads
//! `GET /openapi.json` from the real binary and sends it property-based
//! requests for every operation: the schema's examples, the boundary and
//! invalid values of its coverage phase, and random ones. Each answer must be
//! no server error, have a status the document declares for that operation,
//! the declared content type, and a body that fits the declared schema (an
//! error's `error` one of the codes declared for that status).
//!
//! Runs on servers of their own: without credentials; with a session cookie
//! and its `X-CSRF-Token`; with a bearer token; and with the admin key, on
//! the admin routes and introspection. schemathesis reuses what answers
//! reveal (a session's id from `GET /v1/sessions`), so it does end its own
//! session when it may: each authenticated run first leaves out the
//! operations that can end the credential it runs with (logout, revoking a
//! session by id, the sign-out forms), and the test checks that the
//! credential still works afterwards; then a second run, with the same
//! credential, tries those operations alone. Throttled logins and
//! registrations answer `429`, which the document declares. Without
//! schemathesis the test fails, naming `scripts/setup-test-deps`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::support::*;

/// Kept in step with `scripts/setup-test-deps`.
const VERSION: &str = "4.32.5";

const ADMIN_KEY: &str = "schemathesis-admin-key-0123456789";

/// The checks of each run.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// The operations that can end the credential of an authenticated run.
const ENDS_THE_CREDENTIAL: &str = "^(delete_v1_sessions_current|delete_v1_sessions_id|\
     post_account_devices_end|post_logout|post_v1_tokens_logout)$";

/// The operations behind the admin key.
const ADMIN_OPERATIONS: &str = "^post_v1_(admin_users_username_[a-z]+|tokens_introspect)$";

fn venv() -> PathBuf {
    std::env::var_os("TESSERA_SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/schemathesis-venv")
        })
}

/// The schemathesis program, or a failure that says how to get it.
fn schemathesis() -> PathBuf {
    let bin = venv().join("bin/schemathesis");
    let version = Command::new(&bin).arg("--version").output();
    let found = version
        .as_ref()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VERSION));
    assert!(
        found,
        "schemathesis {VERSION} is required by this test but {} does not run it ({:?}); \
         run scripts/setup-test-deps to install it",
        bin.display(),
        version.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    );
    bin
}

/// The seed of the random examples: fixed, so a failure reproduces;
/// `TESSERA_SCHEMATHESIS_SEED` explores elsewhere.
fn seed() -> String {
    std::env::var("TESSERA_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261128".to_owned())
}

struct Run {
    label: &'static str,
    ok: bool,
    output: String,
    took: Duration,
}

/// `schemathesis run` against `server`, with extra arguments.
async fn run(server: &Server, label: &'static str, extra: Vec<String>) -> Run {
    let bin = schemathesis();
    let mut args = vec![
        "run".to_owned(),
        server.url("/openapi.json"),
        "--checks".to_owned(),
        CHECKS.to_owned(),
        "--phases".to_owned(),
        "examples,coverage,fuzzing".to_owned(),
        "--max-examples".to_owned(),
        "15".to_owned(),
        "--seed".to_owned(),
        seed(),
        // Python 3.11's parser is not thread-safe where Hypothesis describes
        // its filters: more workers fail at random with "AST constructor
        // recursion depth mismatch".
        "--workers".to_owned(),
        "1".to_owned(),
        "--request-timeout".to_owned(),
        "20".to_owned(),
        "--continue-on-failure".to_owned(),
        "--suppress-health-check".to_owned(),
        "all".to_owned(),
    ];
    args.extend(extra);
    // Hypothesis keeps its example database in the working directory.
    let dir = server.dir().to_owned();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(&args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
    })
    .await
    .unwrap()
    .expect("running schemathesis");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        label,
        ok: out.status.success(),
        output,
        took: started.elapsed(),
    }
}

fn header(name: &str, value: &str) -> Vec<String> {
    vec!["--header".to_owned(), format!("{name}: {value}")]
}

fn only(regex: &str) -> Vec<String> {
    vec!["--include-operation-id-regex".to_owned(), regex.to_owned()]
}

fn except(regex: &str) -> Vec<String> {
    vec!["--exclude-operation-id-regex".to_owned(), regex.to_owned()]
}

async fn still_works(server: &Server, headers: HeaderMap, label: &str) {
    let res = server.get("/v1/me", headers).await;
    assert_eq!(
        res.status(),
        200,
        "{label}: the credential no longer works after the run, so the run was not authenticated to the end"
    );
}

#[tokio::test]
async fn schemathesis_finds_nothing_the_document_does_not_declare() {
    let started = Instant::now();
    schemathesis();
    let args = ["--admin-key", ADMIN_KEY];
    let mut runs = Vec::new();

    // Without credentials.
    let server = start_with_args(&args).await;
    runs.push(run(&server, "unauthenticated", Vec::new()).await);

    // With a session cookie, and its CSRF token for unsafe methods.
    let server = start_with_args(&args).await;
    let name = unique("fuzz");
    register(&server, &name).await;
    let session = login(&server, &name).await;
    let mut auth = header("Cookie", &session.cookie);
    auth.extend(header("X-CSRF-Token", &session.csrf));
    let extra = [auth.clone(), except(ENDS_THE_CREDENTIAL)].concat();
    runs.push(run(&server, "session cookie", extra).await);
    still_works(&server, session.cookie_only(), "session cookie").await;
    let extra = [auth, only(ENDS_THE_CREDENTIAL)].concat();
    runs.push(run(&server, "session cookie, ending it", extra).await);

    // With a bearer token; then the admin key.
    let server = start_with_args(&args).await;
    let name = unique("fuzz");
    register(&server, &name).await;
    let grant = tokens(&server, &name).await;
    let token = grant["access_token"].as_str().unwrap().to_owned();
    let auth = header("Authorization", &format!("Bearer {token}"));
    let extra = [auth.clone(), except(ENDS_THE_CREDENTIAL)].concat();
    runs.push(run(&server, "bearer token", extra).await);
    still_works(&server, bearer(&Value::String(token)), "bearer token").await;
    let extra = [auth, only(ENDS_THE_CREDENTIAL)].concat();
    runs.push(run(&server, "bearer token, ending it", extra).await);
    let admin = header("Authorization", &format!("Bearer {ADMIN_KEY}"));
    runs.push(
        run(
            &server,
            "admin key",
            [admin, only(ADMIN_OPERATIONS)].concat(),
        )
        .await,
    );

    let mut report = String::new();
    for r in &runs {
        report.push_str(&format!(
            "\n===== schemathesis, {}: {} in {:.0?} =====\n{}",
            r.label,
            if r.ok { "passed" } else { "FAILED" },
            r.took,
            r.output
        ));
    }
    println!("{report}");
    for r in &runs {
        // A run that tested nothing proves nothing.
        assert!(
            r.output.contains("Tested:") && r.output.contains("generated,"),
            "schemathesis ({}) did not test the API:{report}",
            r.label
        );
    }
    let failed: Vec<&str> = runs.iter().filter(|r| !r.ok).map(|r| r.label).collect();
    assert!(
        failed.is_empty(),
        "schemathesis found answers the OpenAPI document does not declare ({}), seed {}:{report}",
        failed.join(", "),
        seed()
    );
    println!(
        "schemathesis: {} runs in {:.0?}",
        runs.len(),
        started.elapsed()
    );
}
