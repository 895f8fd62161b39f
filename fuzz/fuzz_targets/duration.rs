//! `settings::parse_duration`, which reads every duration setting (flags,
//! environment, file), and its inverse `format_duration`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_server::settings::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(raw) {
        assert!(!d.is_negative(), "{raw:?} parsed as {d}");
        assert!(d <= time::Duration::days(3650), "{raw:?} parsed as {d}");
        // What `tessera config check` prints reads back as the same value.
        let shown = format_duration(d);
        assert_eq!(parse_duration(&shown), Ok(d), "{raw:?} shown as {shown:?}");
    }
});
