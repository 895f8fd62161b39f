//! Interop: tokens verified by an independent JOSE implementation from the JWKS alone.
//!
//! For each asymmetric algorithm a server issues a token, and
//! `scripts/interop/run.sh` verifies it with PyJWT (Python), knowing nothing
//! but the JWKS URL, the issuer and the algorithm; the script also checks
//! that tampered tokens fail there. Python 3 and PyJWT in
//! `target/interop-venv` are required (`scripts/setup-test-deps` installs
//! them): without them these tests fail with a message saying so, rather
//! than pass silently.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::*;

/// The issuer (and audience) the servers are given explicitly.
const ISSUER: &str = "http://127.0.0.1:7480";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/interop/run.sh")
        .canonicalize()
        .expect("scripts/interop/run.sh exists")
}

fn require_python() {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "python3 is required by the interop tests (scripts/interop/run.sh verifies tokens \
         with PyJWT) but was not found on PATH; run scripts/setup-test-deps"
    );
}

async fn verify_with_pyjwt(alg: &'static str) {
    let started = Instant::now();
    require_python();
    let server = start_with_args(&["--jwt-alg", alg, "--issuer", ISSUER]).await;
    let name = unique("interop");
    register(&server, &name).await;
    let (status, body) = status_json(
        server
            .post_json(
                "/v1/tokens",
                &json!({ "username": name, "password": PASSWORD }),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "token login: {body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let jwks_url = server.url("/.well-known/jwks.json");

    let args = [jwks_url, token, ISSUER.to_owned(), alg.to_owned()];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash").arg(script()).args(&args).output()
    })
    .await
    .unwrap()
    .expect("running scripts/interop/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{alg}: PyJWT did not verify the token ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&name),
        "{alg}: the verified claims do not name {name}:\n{stdout}"
    );
    for tamper in [
        "flipped claims character: refused",
        "claims of another user: refused (InvalidSignatureError",
        "flipped signature bit: refused (InvalidSignatureError",
        "wrong audience: refused (InvalidAudienceError",
    ] {
        assert!(
            stdout.contains(tamper),
            "{alg}: no {tamper:?} in:\n{stdout}"
        );
    }
    // The claims PyJWT verified are the ones the server meant.
    let claims: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{alg}: no claims line in:\n{stdout}"));
    assert_eq!(claims["username"], name.as_str());
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], ISSUER);
    eprintln!(
        "interop {alg}: verified by PyJWT in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pyjwt_verifies_eddsa_tokens_from_the_jwks() {
    verify_with_pyjwt("EdDSA").await;
}

#[tokio::test]
async fn pyjwt_verifies_es256_tokens_from_the_jwks() {
    verify_with_pyjwt("ES256").await;
}

#[tokio::test]
async fn pyjwt_verifies_rs256_tokens_from_the_jwks() {
    verify_with_pyjwt("RS256").await;
}
