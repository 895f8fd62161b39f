//! Commands run in the wrong directory create nothing: the read-only ones
//! open the database read-only and name it, `serve` binds its port before
//! it creates anything, and a database whose key file is missing is refused
//! rather than given a new key (issue 7, item 4).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cli::run_in;
use crate::support::*;

/// A JWT in form only (its signature is not checked before the keys are
/// read).
const SOME_JWT: &str =
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImsiLCJ0eXAiOiJhdCtqd3QifQ.eyJzdWIiOiJ1c3JfeCJ9.AAAA";

/// What `dir` holds, by name.
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `dir/name` as the binary, run in `dir`, names it.
fn shown(dir: &Path, name: &str) -> String {
    dir.canonicalize().unwrap().join(name).display().to_string()
}

/// Starts `tessera serve args…` in `dir` and returns it with its first line
/// of standard output (empty when it exited without listening).
pub(crate) fn serve_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "TESSERA_LISTEN",
        "TESSERA_DATABASE_URL",
        "TESSERA_CONFIG",
        "TESSERA_MASTER_KEY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// Stops a server started by [`serve_in`].
pub(crate) fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn commands_that_only_read_create_nothing_and_name_the_database() {
    type Case<'a> = &'a [&'a str];
    let cases: &[Case] = &[
        &["user", "list"],
        &["keys", "list"],
        &["token", "decode", SOME_JWT],
        // These write, but only to an installation that exists.
        &["user", "delete", "someone"],
        &["keys", "rotate"],
    ];
    for args in cases {
        let dir = tempfile::tempdir().unwrap();
        let (code, _, stderr) = run_in(dir.path(), args, &[], None);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let db = shown(dir.path(), "tessera.db");
        assert!(
            stderr.contains(&format!("there is no database at {db}"))
                && stderr.contains("--database"),
            "{args:?}: {stderr}"
        );
        assert!(
            entries(dir.path()).is_empty(),
            "{args:?} created {:?}",
            entries(dir.path())
        );

        // The same with a database named on the command line.
        let named = dir.path().join("elsewhere.db");
        let mut with_db = args.to_vec();
        let url = format!("sqlite://{}", named.display());
        with_db.extend(["--database", &url]);
        let (code, _, stderr) = run_in(dir.path(), &with_db, &[], None);
        assert_eq!(code, 2, "{with_db:?}: {stderr}");
        assert!(
            stderr.contains(&shown(dir.path(), "").to_string()) && stderr.contains("elsewhere.db"),
            "{stderr}"
        );
        assert!(entries(dir.path()).is_empty(), "{with_db:?}");
    }
}

#[tokio::test]
async fn commands_that_only_read_say_which_database_they_read() {
    let server = start().await;
    let name = unique("reader");
    register(&server, &name).await;
    let token = tokens(&server, &name).await;
    let db = server
        .db_path()
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    let url = format!("sqlite://{db}");
    let before = entries(server.dir());

    let (code, stdout, stderr) = run_in(
        server.dir(),
        &["user", "list", "--database", &url],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&name), "{stdout}");
    assert!(stderr.contains(&format!("1 user in {db}")), "{stderr}");

    let (code, _, stderr) = run_in(
        server.dir(),
        &["keys", "list", "--database", &url],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("1 signing key in {db}")),
        "{stderr}"
    );

    let access = token["access_token"].as_str().unwrap();
    let (code, stdout, stderr) = run_in(
        server.dir(),
        &["token", "decode", access, "--database", &url],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("keys: the database {db}")),
        "{stdout}"
    );
    assert!(stdout.contains("verdict: verified"), "{stdout}");

    // Nothing new beside the database (SQLite's -wal and -shm files are the
    // running server's).
    let after: Vec<String> = entries(server.dir())
        .into_iter()
        .filter(|e| !before.contains(e) && !e.ends_with("-wal") && !e.ends_with("-shm"))
        .collect();
    assert!(after.is_empty(), "{after:?}");
}

#[test]
fn a_busy_port_stops_serve_before_anything_is_created() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_in(dir.path(), &["serve", "--listen", &addr], &[], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("listen") && stderr.contains(&addr) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[tokio::test]
async fn a_database_without_its_key_file_is_refused_and_no_key_is_made() {
    let mut server = start().await;
    register(&server, &unique("keyless")).await;
    assert!(server.stop().await.success());
    let dir = server.dir().canonicalize().unwrap();
    let key: PathBuf = dir.join("tessera.key");
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let url = format!("sqlite://{}", dir.join("tessera.db").display());
    let db = dir.join("tessera.db").display().to_string();
    let key_shown = key.display().to_string();

    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--database", &url][..],
        &["keys", "rotate", "--database", &url][..],
        &["token", "decode", SOME_JWT, "--database", &url][..],
    ] {
        let (code, stdout, stderr) = run_in(&dir, args, &[], None);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stdout.contains("listening"), "{stdout}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("tessera:"))
            .unwrap_or_else(|| panic!("{args:?}: {stderr}"));
        assert!(
            line.contains("master_key")
                && line.contains(&db)
                && line.contains(&key_shown)
                && line.contains("--master-key"),
            "{args:?}: {line}"
        );
        assert!(!key.exists(), "{args:?} wrote a new key file");
    }

    // With the key file back, the same database starts again.
    std::fs::write(&key, saved).unwrap();
    let (child, line) = serve_in(&dir, &["--listen", "127.0.0.1:0", "--database", &url], &[]);
    assert!(line.starts_with("tessera listening on "), "{line:?}");
    stop(child);
}

#[test]
fn user_add_makes_a_database_but_no_key_and_serve_then_makes_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_in(
        dir.path(),
        &["user", "add", "first"],
        &[],
        Some("first user's password\n"),
    );
    assert_eq!(code, 0, "{stderr}");
    let db = shown(dir.path(), "tessera.db");
    assert!(
        stdout.contains("created user first (usr_") && stdout.contains(&db),
        "{stdout}"
    );
    assert!(stdout.contains("(a new database)"), "{stdout}");
    assert!(!dir.path().join("tessera.key").exists());

    // Without keys, the missing key file is not what `token decode` reports.
    let (code, _, stderr) = run_in(dir.path(), &["token", "decode", SOME_JWT], &[], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("there are no signing keys in") && !stderr.contains("master key"),
        "{stderr}"
    );
    // The WAL files of the read-only look are gone again; nothing was made.
    assert!(!dir.path().join("tessera.key").exists());

    // The database holds no keys yet, so the first start makes the key file.
    let (child, line) = serve_in(dir.path(), &["--listen", "127.0.0.1:0"], &[]);
    assert!(line.starts_with("tessera listening on "), "{line:?}");
    stop(child);
    assert!(dir.path().join("tessera.key").exists());
}
