//! The browser test: Debian's Chromium, driven by playwright-core through
//! `scripts/browser/run.sh`, goes through the account pages once with a
//! session cookie and once with tokens in cookies (with a 5 s access token
//! that expires mid-way), checks every page with axe-core, photographs it
//! at desktop and phone width into `target/screenshots/` (printed), and
//! checks that no page script can read a credential while the browser
//! sends them. `scripts/setup-test-deps` installs Chromium, playwright-core
//! and @axe-core/playwright; when they are missing, this test fails with a
//! message naming that script.

use crate::support::*;

async fn run_browser(mode: &str, args: &[&str]) {
    let server = start_with_args(args).await;
    let base = server.base().to_owned();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/browser/run.sh");
    let shots = root.join("target/screenshots");
    println!("browser test screenshots ({mode}): {}", shots.display());
    let mode = mode.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(script)
            .arg(base)
            .arg(&mode)
            .arg(shots)
            .output()
    })
    .await
    .unwrap()
    .expect("running scripts/browser/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("browser test passed"), "{stdout}");
    assert!(
        stdout.contains("document.cookie and localStorage are empty"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_account_pages_with_a_session_cookie_in_chromium() {
    run_browser("session", &[]).await;
}

#[tokio::test]
async fn the_account_pages_with_tokens_in_cookies_survive_an_expiry_in_chromium() {
    run_browser("token", &["--access-ttl", "5s"]).await;
}
