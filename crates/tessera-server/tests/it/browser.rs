//! The browser test: Debian's Chromium, driven by playwright-core through
//! `scripts/browser/run.sh`, uses the `/demo` page and checks that no page
//! script can read a session secret or a token, while the browser sends them.
//! `scripts/setup-test-deps` installs Chromium and playwright-core; when they
//! are missing, this test fails with a message naming that script.

use crate::support::*;

#[tokio::test]
async fn page_scripts_never_see_a_credential() {
    let server = start().await;
    let base = server.base().to_owned();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser/run.sh");
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(script).arg(base).output())
            .await
            .unwrap()
            .expect("running scripts/browser/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
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
async fn the_demo_page_forbids_inline_scripts_and_framing() {
    let server = start().await;
    for (path, kind) in [("/demo", "text/html"), ("/demo/demo.js", "text/javascript")] {
        let res = server.get(path, Default::default()).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(
            !csp.contains("script-src") || !csp.contains("unsafe-inline"),
            "{csp}"
        );
    }
}
