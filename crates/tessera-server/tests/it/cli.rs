//! The `tessera` command: settings, exit codes, help, operator commands.

use std::io::Write as _;
use std::process::{Command, Stdio};

use reqwest::Method;

use crate::support::*;

/// Runs `tessera args…` in a temporary directory and returns (code, stdout, stderr).
pub(crate) fn run(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), args, env, stdin)
}

/// Runs `tessera args…` in `dir` and returns (code, stdout, stderr).
pub(crate) fn run_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "TESSERA_LISTEN",
        "TESSERA_DATABASE_URL",
        "TESSERA_REDIS_URL",
        "TESSERA_CONFIG",
        "TESSERA_SESSION_IDLE",
        "TESSERA_MASTER_KEY",
        "TESSERA_INSECURE_DEV_COOKIES",
        "TESSERA_ALLOW_INSECURE_COOKIES_ON_NETWORK",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_settings_stop_the_start_with_one_line_and_exit_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--session-idle", "2x"], &[], "session_idle"),
        (&["--session-ttl", "0s"], &[], "session_ttl"),
        (&["--jwt-alg", "none"], &[], "jwt_alg"),
        (&["--leeway", "61s"], &[], "leeway"),
        (&["--listen", "nowhere"], &[], "listen"),
        (&["--database", "mysql://x"], &[], "database"),
        (
            &["--database", "sqlite:///nonexistent-tessera-dir/sub/x.db"],
            &[],
            "database",
        ),
        (&["--master-key", "abcd"], &[], "master_key"),
        (&[], &[("TESSERA_SESSION_IDLE", "soon")], "session_idle"),
        (&[], &[("TESSERA_ACCESS_TTL", "-1m")], "access_ttl"),
    ];
    for (args, env, setting) in cases {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        if args.first() == Some(&"--listen") {
            full.truncate(1);
        }
        full.extend_from_slice(args);
        let (code, stdout, stderr) = run(&full, env, None);
        assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("tessera:"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(setting),
            "{setting} not named in {stderr}"
        );
    }
}

#[test]
fn a_config_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.toml");
    std::fs::write(&path, "session_idle = \"10m\"\nleeway = \"90s\"\n").unwrap();
    let (code, _, stderr) = run(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("leeway"), "{stderr}");
    // The flag wins over the file.
    let (code, stdout, stderr) = run(
        &[
            "config",
            "check",
            "--config",
            path.to_str().unwrap(),
            "--leeway",
            "10s",
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("session_idle = \"10m\""), "{stdout}");
    assert!(stdout.contains("leeway = \"10s\""), "{stdout}");

    // Passwords in URLs are not printed.
    let (code, stdout, _) = run(
        &[
            "config",
            "check",
            "--database",
            "postgres://app:s3cret-pw@db.internal/tessera",
            "--redis",
            "redis://:redis-pw@cache:6379",
            "--master-key",
            "5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a",
        ],
        &[],
        None,
    );
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("s3cret-pw") && !stdout.contains("redis-pw") && !stdout.contains("abab"),
        "{stdout}"
    );
    assert!(
        stdout.contains("postgres://app:***@db.internal/tessera"),
        "{stdout}"
    );

    std::fs::write(&path, "sesion_idle = \"10m\"\n").unwrap();
    let (code, _, stderr) = run(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("sesion_idle"), "{stderr}");
}

#[test]
fn openapi_prints_the_served_document() {
    let (code, stdout, stderr) = run(&["openapi"], &[], None);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, tessera_server::openapi::document());
}

#[test]
fn help_explains_every_option() {
    let (code, stdout, _) = run(&["serve", "--help"], &[], None);
    assert_eq!(code, 0);
    for flag in [
        "--listen",
        "--database",
        "--redis",
        "--issuer",
        "--audience",
        "--jwt-alg",
        "--refresh-grace",
        "--leeway",
        "--master-key",
        "--admin-key",
        "--insecure-dev-cookies",
        "--access-ttl",
        "--refresh-ttl",
        "--session-idle",
        "--session-ttl",
        "--config",
        "TESSERA_LISTEN",
        "TESSERA_DATABASE_URL",
    ] {
        assert!(
            stdout.contains(flag),
            "{flag} missing from serve --help:\n{stdout}"
        );
    }
    let (code, stdout, _) = run(&["--help"], &[], None);
    assert_eq!(code, 0);
    for cmd in ["serve", "user", "config"] {
        assert!(stdout.contains(cmd), "{cmd} missing from --help");
    }
}

#[tokio::test]
async fn operators_add_users_from_stdin_and_list_them() {
    let server = start().await;
    let db = format!("sqlite://{}", server.db_path().display());
    let (code, stdout, stderr) = run(
        &["user", "add", "Operator", "--database", &db],
        &[],
        Some("op password 123\n"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Operator"), "{stdout}");
    // The running server sees the user at once.
    login_as(&server, "operator", "op password 123").await;

    let (code, _, stderr) = run(
        &["user", "add", "OPERATOR", "--database", &db],
        &[],
        Some("other password\n"),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("taken"), "{stderr}");
    let (code, _, stderr) = run(
        &["user", "add", "shortpw", "--database", &db],
        &[],
        Some("short\n"),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("password"), "{stderr}");

    let (code, stdout, _) = run(&["user", "list"], &[("TESSERA_DATABASE_URL", &db)], None);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Operator") && stdout.contains("usr_"),
        "{stdout}"
    );
    assert!(!stdout.contains("argon2"), "no hashes in the listing");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let mut server = start().await;
    let name = unique("sigterm");
    register(&server, &name).await;
    let status = server.stop().await;
    assert!(status.success(), "{status}");
    assert!(server.log().contains("stopped"), "{}", server.log());
}

#[tokio::test]
async fn a_stop_signal_lets_the_request_in_flight_finish() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for signal in [
        tessera_testkit::Signal::SIGTERM,
        tessera_testkit::Signal::SIGINT,
    ] {
        let mut server = start().await;
        let name = unique("inflight");
        register(&server, &name).await;
        // A login whose body arrives in two halves: between them the request
        // is in flight for certain, and the signal comes then.
        let body = format!(r#"{{"username":"{name}","password":"{PASSWORD}"}}"#);
        let (first, second) = body.split_at(body.len() / 2);
        let addr = server.base().trim_start_matches("http://").to_owned();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{first}",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        server.signal(signal);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        conn.write_all(second.as_bytes()).await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        assert!(
            response.starts_with("HTTP/1.1 201"),
            "{signal:?}: {response}"
        );
        assert!(response.contains("tessera_session=tsr_ss_"), "{response}");
        let status = server.wait().await;
        assert!(status.success(), "{signal:?}: {status}");
        // And no new connection is accepted any more.
        assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    }
}

#[tokio::test]
async fn the_default_database_is_tessera_db_in_the_working_directory() {
    // No --database: the embedded default creates ./tessera.db.
    let server = Server::start_with(
        BIN,
        Options {
            embedded_default: true,
            ..Options::default()
        },
    )
    .await;
    register(&server, &unique("default")).await;
    assert!(server.dir().join("tessera.db").exists());
    let (status, _) = call(&server, Method::GET, "/readyz", Default::default(), None).await;
    assert_eq!(status, 200);
}

#[test]
fn each_command_shows_only_the_flags_it_uses() {
    let serve_only = [
        "--listen",
        "--admin-key",
        "--insecure-dev-cookies",
        "--session-idle",
        "--session-ttl",
        "--refresh-ttl",
        "--database-max-connections",
    ];
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            &["user", "add"],
            &["--database", "--database-schema", "--config"],
            &["--redis", "--master-key", "--issuer", "--jwt-alg"],
        ),
        (
            &["user", "list"],
            &["--database", "--config"],
            &["--redis", "--master-key", "--issuer"],
        ),
        (
            &["user", "delete"],
            &["--database", "--redis", "--redis-prefix"],
            &["--master-key", "--issuer"],
        ),
        (
            &["token", "decode"],
            &[
                "--database",
                "--master-key",
                "--issuer",
                "--audience",
                "--jwt-alg",
                "--leeway",
                "--jwks",
                "--secret",
            ],
            &["--redis", "--access-ttl", "--key-refresh"],
        ),
        (
            &["keys", "rotate"],
            &[
                "--database",
                "--master-key",
                "--jwt-alg",
                "--access-ttl",
                "--key-refresh",
            ],
            &["--redis", "--issuer"],
        ),
        (
            &["keys", "list"],
            &["--database", "--jwt-alg", "--access-ttl", "--key-refresh"],
            &["--redis", "--master-key", "--issuer"],
        ),
    ];
    for (command, shown, hidden) in cases {
        let mut args = command.to_vec();
        args.push("--help");
        let (code, stdout, _) = run(&args, &[], None);
        assert_eq!(code, 0);
        for flag in *shown {
            assert!(
                stdout.contains(flag),
                "{flag} missing from {command:?} --help"
            );
        }
        for flag in hidden.iter().chain(&serve_only) {
            assert!(
                !stdout.contains(&format!("{flag} ")),
                "{flag} in {command:?} --help:\n{stdout}"
            );
        }
    }
    // The flags a command does not use are hidden, not refused: a script
    // may pass the same flags to every command, as to `serve`.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_in(
        dir.path(),
        &[
            "user",
            "list",
            "--listen",
            "127.0.0.1:0",
            "--session-idle",
            "5m",
        ],
        &[],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("there is no database"), "{stderr}");
}

#[test]
fn durations_are_written_as_the_help_writes_them() {
    let (code, stdout, _) = run(&["config", "check"], &[], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("session_ttl = \"24h\""), "{stdout}");
    let (_, help, _) = run(&["serve", "--help"], &[], None);
    assert!(help.contains("[default: 24h]"), "{help}");
}

#[test]
fn the_redis_help_names_what_lives_in_redis() {
    let (_, help, _) = run(&["serve", "--help"], &[], None);
    let redis = help
        .split("--redis <URL>")
        .nth(1)
        .and_then(|rest| rest.split("--redis-prefix").next())
        .unwrap();
    assert!(
        redis.contains("sessions, refresh tokens and login-failure counters"),
        "{redis}"
    );
    assert!(!redis.contains("revocation list"), "{redis}");
}

#[test]
fn token_decode_names_opaque_credentials_without_repeating_them() {
    let refresh = format!("tsr_rt_{}", "A".repeat(43));
    let secret = format!("tsr_ss_{}", "B".repeat(43));
    for (token, kind) in [(&refresh, "refresh token"), (&secret, "session secret")] {
        let (code, stdout, stderr) = run(&["token", "decode", token], &[], None);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stdout.contains(kind) && stdout.contains("opaque by design"),
            "{stdout}"
        );
        assert!(!stdout.contains("not a JWT: expected"), "{stdout}");
        assert!(
            !stdout.contains(token.as_str()) && !stderr.contains(token.as_str()),
            "the token was printed"
        );
    }
}

#[test]
fn user_add_says_when_standard_input_is_empty() {
    for stdin in [None, Some("\n")] {
        let dir = tempfile::tempdir().unwrap();
        let (code, _, stderr) = run_in(dir.path(), &["user", "add", "nobody"], &[], stdin);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("standard input is empty")
                || stderr.contains("first line of standard input is empty"),
            "{stdin:?}: {stderr}"
        );
        assert!(!stderr.contains("between 8"), "{stderr}");
        // Nothing was created for a user that was not added.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

#[tokio::test]
async fn development_cookies_warn_and_stay_on_this_machine_unless_allowed() {
    // The testkit's server listens on 127.0.0.1 with development cookies.
    let server = start().await;
    assert!(
        server.log().contains("--insecure-dev-cookies")
            && server.log().contains("never in production"),
        "{}",
        server.log()
    );

    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_in(
        dir.path(),
        &["serve", "--insecure-dev-cookies", "--listen", "0.0.0.0:0"],
        &[],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains("insecure_dev_cookies")
            && stderr.contains("0.0.0.0:0")
            && stderr.contains("--allow-insecure-cookies-on-network"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Allowed by flag, or by its variable.
    for (args, env) in [
        (
            &[
                "--insecure-dev-cookies",
                "--allow-insecure-cookies-on-network",
            ][..],
            &[][..],
        ),
        (
            &["--insecure-dev-cookies"][..],
            &[("TESSERA_ALLOW_INSECURE_COOKIES_ON_NETWORK", "1")][..],
        ),
    ] {
        let mut full = args.to_vec();
        full.extend(["--listen", "0.0.0.0:0"]);
        let (child, line) = crate::stray_state::serve_in(dir.path(), &full, env);
        assert!(
            line.starts_with("tessera listening on http://0.0.0.0:"),
            "{line:?}"
        );
        crate::stray_state::stop(child);
    }
}
