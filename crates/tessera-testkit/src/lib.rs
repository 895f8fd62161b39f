//! Boots the real `tessera` binary on `127.0.0.1:0` with a temporary database
//! and hands back a client: what every end-to-end test uses.
//!
//! Each [`Server`] owns a fresh temporary directory (database, key file, the
//! server's log), so tests share nothing and can run in parallel. The server
//! is stopped with SIGTERM by [`Server::stop`] or killed when dropped; no test
//! ever kills a process by name.
//!
//! ```text
//! let server = Server::start(env!("CARGO_BIN_EXE_tessera")).await;
//! let res = server.post_json("/v1/users", &json!({"username": "ada", "password": "long enough"})).await;
//! assert_eq!(res.status(), 201);
//! ```

// Test support: a failed expectation should panic with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Response};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Signals for [`Server::signal`].
pub use nix::sys::signal::Signal;

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `tessera serve` and an HTTP client for it.
pub struct Server {
    bin: PathBuf,
    args: Vec<String>,
    open_files: Option<u64>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    base: String,
    metrics_base: Option<String>,
    client: Client,
}

/// Options for [`Server::start_with`].
#[derive(Default, Clone)]
pub struct Options {
    /// Extra flags after the defaults. `--database` here replaces the
    /// temporary SQLite database.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Secure cookies (`__Host-` names) instead of the development ones.
    pub secure_cookies: bool,
    /// No `--database` at all: the server's own default (`./tessera.db` in
    /// its working directory, the temporary directory).
    pub embedded_default: bool,
    /// Start the server under `ulimit -n N` (soft and hard limit on open
    /// files), as an operator's shell or service manager might.
    pub open_files: Option<u64>,
}

impl Server {
    /// Starts the binary at `bin` with a temporary SQLite database and
    /// development cookies (tests speak plain HTTP).
    pub async fn start(bin: impl AsRef<Path>) -> Self {
        Self::start_with(bin, Options::default()).await
    }

    /// Starts the binary with extra options.
    pub async fn start_with(bin: impl AsRef<Path>, opts: Options) -> Self {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        if !opts.embedded_default && !opts.args.iter().any(|a| a == "--database") {
            args.push("--database".to_owned());
            args.push(format!(
                "sqlite://{}",
                dir.path().join("tessera.db").display()
            ));
        }
        if !opts.secure_cookies {
            args.push("--insecure-dev-cookies".to_owned());
        }
        args.extend(opts.args);
        let mut server = Self {
            bin: bin.as_ref().to_owned(),
            args,
            open_files: opts.open_files,
            env: opts.env,
            dir,
            child: None,
            base: String::new(),
            metrics_base: None,
            client: {
                // reqwest is built with rustls and no default provider (the
                // server installs aws-lc-rs in main); tests do the same.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                Client::builder()
            }
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the HTTP client"),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log");
        let mut cmd = match self.open_files {
            None => Command::new(&self.bin),
            Some(n) => {
                // The shell sets the limit and becomes tessera (same pid).
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(r#"ulimit -n "$0" && exec "$@""#)
                    .arg(n.to_string())
                    .arg(&self.bin);
                cmd
            }
        };
        cmd.args(&self.args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting tessera");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .expect("tessera did not print its listening line in time")
            .expect("reading tessera's stdout");
        let Some(line) = line else {
            let status = child.wait().await.expect("waiting for tessera");
            panic!(
                "tessera exited ({status}) before listening; log:\n{}",
                self.log()
            );
        };
        let base = line
            .strip_prefix("tessera listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        self.base = base.to_owned();
        // With --metrics-listen, the server prints the metrics address next.
        let metrics = self.args.iter().any(|a| a == "--metrics-listen")
            || self.env.iter().any(|(k, _)| k == "TESSERA_METRICS_LISTEN");
        self.metrics_base = if metrics {
            let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
                .await
                .expect("tessera did not print its metrics line in time")
                .expect("reading tessera's stdout")
                .expect("tessera closed stdout before its metrics line");
            let base = line
                .strip_prefix("tessera metrics on ")
                .unwrap_or_else(|| panic!("unexpected second line: {line:?}"));
            Some(base.to_owned())
        } else {
            None
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The full URL of `path` on the metrics listener: the server must have
    /// been started with `--metrics-listen` (or `TESSERA_METRICS_LISTEN`).
    pub fn metrics_url(&self, path: &str) -> String {
        let base = self
            .metrics_base
            .as_deref()
            .expect("the server was started without --metrics-listen");
        format!("{base}{path}")
    }

    /// The HTTP client (no cookie store, no redirects).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("tessera.db")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends `signal` to the server without waiting (see [`Server::wait`]).
    pub fn signal(&self, signal: Signal) {
        send_signal(self.pid().expect("server is running"), signal);
    }

    /// Waits (at most 30 s) for the server process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("tessera did not exit within 30 s")
            .expect("waiting for tessera")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        if let Some(pid) = child.id() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                .expect("sending SIGTERM");
        }
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("tessera did not stop within 30 s of SIGTERM")
            .expect("waiting for tessera")
    }

    /// Stops the server and starts it again on the same directory and flags
    /// (a new port).
    pub async fn restart(&mut self) {
        let status = self.stop().await;
        assert!(status.success(), "tessera exited with {status}");
        self.spawn().await;
    }

    /// Kills the server with SIGKILL (no graceful shutdown, nothing flushed
    /// by the process itself) and waits for it to be gone.
    pub async fn kill(&mut self) -> ExitStatus {
        self.signal(Signal::SIGKILL);
        self.wait().await
    }

    /// Starts the server again, on the same directory and flags (a new
    /// port), after it exited ([`Server::kill`], [`Server::wait`]).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn().await;
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(reqwest::Method::POST, path, HeaderMap::new(), Some(body))
            .await
    }

    /// `GET path` with extra headers.
    pub async fn get(&self, path: &str, headers: HeaderMap) -> Response {
        self.request(reqwest::Method::GET, path, headers, None)
            .await
    }

    /// Any request, with headers and an optional JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: HeaderMap,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path)).headers(headers);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("sending the request")
    }
}

/// Sends `signal` to the process `pid` (a child the test started itself:
/// tests never signal a process found by name).
pub fn send_signal(pid: u32, signal: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
    nix::sys::signal::kill(pid, signal).expect("sending a signal");
}

/// A header map from `(name, value)` pairs.
pub fn headers<const N: usize>(pairs: [(&'static str, &str); N]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            name,
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    map
}

/// The `Set-Cookie` headers of a response.
pub fn set_cookies(res: &Response) -> Vec<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// The `name=value` pair of the cookie `name` among a response's `Set-Cookie` headers.
pub fn cookie_pair(res: &Response, name: &str) -> Option<String> {
    set_cookies(res)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
}
