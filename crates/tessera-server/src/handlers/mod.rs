//! The route handlers of API.md, grouped as the API groups them.

pub mod me;
pub mod ops;
pub mod sessions;
pub mod tokens;
pub mod users;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current time, to the millisecond: the precision every store keeps, so
/// that a time in a response reads the same when it comes back from the store.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}

/// RFC 3339 in UTC, as every time in the API.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}
