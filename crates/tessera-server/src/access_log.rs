//! The access log: one line per request on standard error, with its method,
//! path, status and latency — never headers, bodies or query strings.
//!
//! The line is the one `tower_http`'s `TraceLayer` used to write through
//! `tracing`, byte for byte (plain text, without colours):
//!
//! ```text
//! 2026-11-28T23:48:18.028766Z  INFO request{method=GET path=/healthz}: tower_http::trace::on_response: finished processing request latency=0 ms status=200
//! ```
//!
//! and it is filtered by `RUST_LOG` as before (target
//! `tower_http::trace::on_response`, level `info`). What changed is the cost:
//! written through `tracing`'s formatter, synchronously, it cost as much as a
//! whole `/healthz` (`docs/profile-healthz.md`). Here the request formats it by
//! hand into a shared buffer, and a thread writes the buffer out at most
//! [`FLUSH_EVERY`] later, many lines in one `write`. Nothing is dropped: a
//! buffer past [`MAX_BUFFER`] is written out at once by the request that
//! filled it, and [`flush`] (called when the server stops) writes the rest.
//! Lines of a process killed with `SIGKILL` in the last [`FLUSH_EVERY`] are
//! lost, as a `BufWriter`'s would be.

use std::io::Write as _;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;

/// The target the line is filtered by (`RUST_LOG=tower_http=warn` turns it
/// off), the one `tower_http` used.
pub const TARGET: &str = "tower_http::trace::on_response";

/// Longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// A buffer this large is written out at once.
pub const MAX_BUFFER: usize = 64 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Told when the buffer stops being empty.
    ready: Condvar,
    /// Held while a batch is written, so batches reach stderr in order.
    writing: Mutex<()>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        // If the thread cannot start, every line is still written: by the
        // request that fills the buffer, and by `flush`.
        let _ = std::thread::Builder::new()
            .name("tessera-access-log".into())
            .spawn(flusher);
        Shared {
            buf: Mutex::new(Vec::with_capacity(8 * 1024)),
            ready: Condvar::new(),
            writing: Mutex::new(()),
        }
    })
}

fn flusher() {
    let shared = shared();
    loop {
        {
            let mut buf = shared.buf.lock().unwrap_or_else(PoisonError::into_inner);
            while buf.is_empty() {
                buf = shared
                    .ready
                    .wait(buf)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        // Let the lines of the next few milliseconds join this batch.
        std::thread::sleep(FLUSH_EVERY);
        flush();
    }
}

/// Writes out every buffered line now.
pub fn flush() {
    let shared = shared();
    let _writing = shared
        .writing
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let out = {
        let mut buf = shared.buf.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.is_empty() {
            return;
        }
        std::mem::replace(&mut *buf, Vec::with_capacity(8 * 1024))
    };
    let mut stderr = std::io::stderr().lock();
    // Where standard error has gone, nothing more can be done about it.
    let _ = stderr.write_all(&out);
    let _ = stderr.flush();
}

/// Whether the line is written at all (`RUST_LOG`).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// Logs one answered request: `at` is when the request came in plus its
/// `latency`, i.e. now.
pub fn record(at: SystemTime, method: &Method, path: &str, status: u16, latency: Duration) {
    let shared = shared();
    let full = {
        let mut buf = shared.buf.lock().unwrap_or_else(PoisonError::into_inner);
        let was_empty = buf.is_empty();
        format_line(&mut buf, at, method, path, status, latency);
        if was_empty {
            shared.ready.notify_one();
        }
        buf.len() >= MAX_BUFFER
    };
    if full {
        flush();
    }
}

/// Appends the line (with its `\n`) to `out`.
pub fn format_line(
    out: &mut Vec<u8>,
    at: SystemTime,
    method: &Method,
    path: &str,
    status: u16,
    latency: Duration,
) {
    push_timestamp(out, at);
    out.extend_from_slice(b"  INFO request{method=");
    push_clean(out, method.as_str());
    out.extend_from_slice(b" path=");
    push_clean(out, path);
    out.extend_from_slice(b"}: ");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b": finished processing request latency=");
    push_number(out, latency.as_millis().try_into().unwrap_or(u64::MAX), 1);
    out.extend_from_slice(b" ms status=");
    push_number(out, u64::from(status), 1);
    out.push(b'\n');
}

/// Control characters escaped, as `tracing`'s formatter does, so a path
/// cannot forge a line (hyper already refuses them in a request target).
fn push_clean(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b < 0x20 || b == 0x7f {
            out.extend_from_slice(b"\\x");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `n` in decimal, at least `width` digits (zero-padded).
fn push_number(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 && digits.len() - i >= width {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// RFC 3339 in UTC with microseconds, as `tracing`'s formatter writes it:
/// `2026-11-28T23:48:18.028766Z`.
fn push_timestamp(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    push_number(out, year, 4);
    out.push(b'-');
    push_number(out, month, 2);
    out.push(b'-');
    push_number(out, day, 2);
    out.push(b'T');
    push_number(out, rem / 3600, 2);
    out.push(b':');
    push_number(out, rem % 3600 / 60, 2);
    out.push(b':');
    push_number(out, rem % 60, 2);
    out.push(b'.');
    push_number(out, u64::from(since.subsec_micros()), 6);
    out.push(b'Z');
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: SystemTime, method: &Method, path: &str, status: u16, ms: u64) -> String {
        let mut out = Vec::new();
        format_line(
            &mut out,
            at,
            method,
            path,
            status,
            Duration::from_millis(ms),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_line_is_the_one_tower_http_wrote() {
        // 2026-11-28T23:48:18.028766Z
        let at = UNIX_EPOCH + Duration::from_micros(1_795_909_698_028_766);
        assert_eq!(
            line(at, &Method::GET, "/healthz", 200, 0),
            "2026-11-28T23:48:18.028766Z  INFO request{method=GET path=/healthz}: \
             tower_http::trace::on_response: finished processing request latency=0 ms \
             status=200\n"
        );
        assert_eq!(
            line(UNIX_EPOCH, &Method::DELETE, "/v1/sessions/x", 404, 1234),
            "1970-01-01T00:00:00.000000Z  INFO request{method=DELETE path=/v1/sessions/x}: \
             tower_http::trace::on_response: finished processing request latency=1234 ms \
             status=404\n"
        );
    }

    #[test]
    fn dates_are_right_across_leap_years() {
        // 2000-02-29T12:00:00Z and 2024-12-31T23:59:59Z.
        let leap = UNIX_EPOCH + Duration::from_secs(951_825_600);
        assert!(line(leap, &Method::GET, "/", 200, 0).starts_with("2000-02-29T12:00:00.000000Z"));
        let eoy = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert!(line(eoy, &Method::GET, "/", 200, 0).starts_with("2024-12-31T23:59:59.000000Z"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(
            line(UNIX_EPOCH, &Method::GET, "/a\nb\x1b", 200, 0).contains("path=/a\\x0ab\\x1b}")
        );
    }
}
