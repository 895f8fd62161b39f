//! A setting or store that cannot be used stops the command with one line
//! that names the path, key or variable and says what to do, and exit code 2
//! (issue 7, item 5).

use std::time::{Duration, Instant};

use tessera_store_postgres::{OpenError, OpenMode, PoolOptions, PostgresStore};

use crate::cli::{run, run_in};
use crate::stray_state::entries;

/// The lines `tessera` printed as errors.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("tessera:"))
        .collect()
}

/// A master key for commands that need one.
fn master_key() -> String {
    "5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a".to_owned()
}

/// Runs one SQL statement on the SQLite file `db` with Python's sqlite3, an
/// SQLite client other than tessera.
fn sqlite_exec(db: &std::path::Path, sql: &str) {
    let done = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()")
        .arg(db)
        .arg(sql)
        .status()
        .expect("python3 runs the SQL (scripts/setup-test-deps installs it)");
    assert!(done.success(), "{sql}");
}

/// A TCP port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn sqlite_open_failures_name_the_file_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("a-directory")).unwrap();
    std::fs::write(root.join("notes.txt"), "not a database\n").unwrap();
    let cases = [
        (
            "sqlite:///nonexistent-tessera-dir/sub/x.db".to_owned(),
            "the directory /nonexistent-tessera-dir/sub does not exist",
        ),
        (
            format!("sqlite://{}", root.join("a-directory").display()),
            "is a directory",
        ),
        (
            format!("sqlite://{}", root.join("notes.txt").display()),
            "is not an SQLite database",
        ),
    ];
    for (url, cause) in &cases {
        let (code, stdout, stderr) = run_in(
            &root,
            &["serve", "--listen", "127.0.0.1:0", "--database", url],
            &[],
            None,
        );
        assert_eq!(code, 2, "{url}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        let path = url.trim_start_matches("sqlite://");
        assert!(
            lines[0].contains(path) && lines[0].contains(cause) && lines[0].contains("--database"),
            "{url}: {}",
            lines[0]
        );
        assert!(
            lines[0].matches("unable to open").count() <= 1,
            "{}",
            lines[0]
        );
    }
}

#[test]
fn a_read_only_database_is_exit_2_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (code, _, stderr) = run_in(
        &root,
        &["user", "add", "reader"],
        &[],
        Some("a long password\n"),
    );
    assert_eq!(code, 0, "{stderr}");
    let db = root.join("tessera.db");
    let read_only = format!("sqlite://{}?mode=ro", db.display());
    for (args, stdin) in [
        (
            vec!["serve", "--listen", "127.0.0.1:0", "--database", &read_only],
            None,
        ),
        (
            vec!["user", "add", "writer", "--database", &read_only],
            Some("a long password\n"),
        ),
    ] {
        let (code, _, stderr) = run_in(&root, &args, &[], stdin);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(&format!("the database {} is read-only", db.display()))
                && lines[0].contains("mode=ro"),
            "{}",
            lines[0]
        );
        assert!(!lines[0].contains("store error"), "{}", lines[0]);
    }

    // A file the user may not write (root may write anything, so this part
    // only runs as another user).
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&db).is_err() {
        let url = format!("sqlite://{}", db.display());
        let (code, _, stderr) = run_in(
            &root,
            &["user", "add", "writer", "--database", &url],
            &[],
            Some("a long password\n"),
        );
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("read-only") && stderr.contains("writable by the user"),
            "{stderr}"
        );
    }
}

#[test]
fn config_file_errors_name_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.toml");
    let file = path.to_str().unwrap();
    for (text, wanted) in [
        (
            "session_idle = \"10m\"\nleeway = 5\n",
            &["tessera.toml line 2", "leeway", "leeway = \"5s\""][..],
        ),
        (
            "session_ttl = 24h\n",
            &["tessera.toml line 1", "session_ttl = \"24h\""][..],
        ),
        (
            "listen = \"127.0.0.1:7480\"\nsesion_idle = \"10m\"\n",
            &[
                "line 2",
                "unknown key sesion_idle",
                "did you mean session_idle?",
            ][..],
        ),
        (
            "\n\nleeway = \"90s\"\n",
            &[
                "invalid setting leeway",
                "at most 60s",
                "tessera.toml line 3",
            ][..],
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = run(&["config", "check", "--config", file], &[], None);
        assert_eq!(code, 2, "{text:?}: {stderr}");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        for part in wanted {
            assert!(lines[0].contains(part), "{part:?} not in {}", lines[0]);
        }
    }
}

#[test]
fn a_misspelt_variable_is_named_with_the_closest_known_one() {
    let secret = "f00d".repeat(16);
    let (code, stdout, stderr) = run(
        &["config", "check"],
        &[
            ("TESSERA_SESION_IDLE", "5m"),
            ("TESSERA_MASTR_KEY", &secret),
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("session_idle = \"30m\""), "{stdout}");
    assert!(
        stderr.contains("TESSERA_SESION_IDLE")
            && stderr.contains("did you mean TESSERA_SESSION_IDLE?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TESSERA_MASTR_KEY") && stderr.contains("did you mean TESSERA_MASTER_KEY?"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&secret) && !stdout.contains(&secret),
        "a value was shown"
    );
}

#[test]
fn config_check_refuses_postgres_without_a_master_key_as_serve_does() {
    let url = "postgres://app@db.internal/tessera";
    let (code, stdout, stderr) = run(&["config", "check", "--database", url], &[], None);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("master_key")
            && lines[0].contains("required with PostgreSQL")
            && lines[0].contains("TESSERA_MASTER_KEY"),
        "{}",
        lines[0]
    );
    let (code, _, stderr) = run(
        &[
            "config",
            "check",
            "--database",
            url,
            "--master-key",
            &master_key(),
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_refused_postgres_connection_says_refused_not_pool_timed_out() {
    let url = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
    let started = Instant::now();
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &url,
            "--master-key",
            &master_key(),
        ],
        &[],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(&url) && lines[0].contains("connection refused"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("timed out"), "{}", lines[0]);
}

#[tokio::test]
async fn postgres_is_left_untouched_by_a_start_or_a_read_that_cannot_proceed() {
    let Some(urls) = tessera_store::conformance::backend_urls(
        &["TESSERA_TEST_DATABASE_URL"],
        "postgres_is_left_untouched_by_a_start_or_a_read_that_cannot_proceed",
    ) else {
        return;
    };
    let url = &urls[0];
    let schema = format!("tessera_untouched_{}", std::process::id());
    // serve without a master key: refused before it connects.
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            url,
            "--database-schema",
            &schema,
        ],
        &[],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("master_key"), "{stderr}");
    // Read-only commands on a schema that does not exist.
    for args in [&["user", "list"][..], &["keys", "list"][..]] {
        let mut full = args.to_vec();
        full.extend(["--database", url, "--database-schema", &schema]);
        let (code, _, stderr) = run(&full, &[], None);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("the schema {schema} does not exist"))
                && stderr.contains("--database-schema"),
            "{stderr}"
        );
    }
    let opened = PostgresStore::open_with(
        url,
        Some(&schema),
        PoolOptions::default(),
        OpenMode::ReadOnly,
    )
    .await;
    assert!(
        matches!(opened, Err(OpenError::NoSchema(_))),
        "the schema was created"
    );
}

/// Another program's SQLite database is refused by every command, and left
/// as it was: no tessera tables, no journal-mode switch, no key file.
#[test]
fn another_programs_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let db = root.join("app.db");
    sqlite_exec(&db, "CREATE TABLE notes (body TEXT)");
    let before = std::fs::read(&db).unwrap();
    let url = format!("sqlite://{}", db.display());
    // `serve` last: were it to accept the file, it would not return.
    for args in [
        vec!["user", "list", "--database", &url],
        vec!["user", "add", "someone", "--database", &url],
        vec!["serve", "--listen", "127.0.0.1:0", "--database", &url],
    ] {
        let (code, _, stderr) = run_in(&root, &args, &[], Some("correct horse battery\n"));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("is not a tessera database") && lines[0].contains("app.db"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file was changed");
    assert_eq!(
        entries(&root),
        ["app.db"],
        "no key file, WAL or other file beside it"
    );
}

/// A database an older tessera made (a migration missing) is not migrated
/// by a command that only reads; it says how to migrate it.
#[test]
fn a_read_only_command_names_an_outdated_database() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (code, _, stderr) = run_in(
        &root,
        &["user", "add", "someone"],
        &[],
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0, "{stderr}");
    let db = root.join("tessera.db");
    sqlite_exec(&db, "DELETE FROM _sqlx_migrations WHERE version = 2");
    let (code, _, stderr) = run_in(&root, &["user", "list"], &[], None);
    assert_eq!(code, 2, "{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("not migrated yet") && lines[0].contains("tessera serve"),
        "{stderr}"
    );
}
