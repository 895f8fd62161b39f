//! The TOML settings file, through `Settings::resolve` exactly as `--config
//! FILE` reads it: parsing, the error message that names the line and the
//! key, merging, defaults and validation; then `summary` and `check_serve`
//! on what resolved.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_server::settings::{Settings, SettingsArgs};

/// One file per process, rewritten for every input.
static FILE: LazyLock<PathBuf> = LazyLock::new(|| {
    std::env::temp_dir().join(format!("tessera-fuzz-config-{}.toml", std::process::id()))
});

fuzz_target!(|data: &[u8]| {
    if std::fs::write(&*FILE, data).is_err() {
        return;
    }
    match Settings::resolve(SettingsArgs {
        config: Some(FILE.clone()),
        ..SettingsArgs::default()
    }) {
        Ok(settings) => {
            let _ = settings.summary();
            let _ = settings.check_serve();
        }
        Err(e) => {
            // One line, as `main` prints it.
            let line = e.to_string();
            assert!(!line.is_empty());
        }
    }
});
