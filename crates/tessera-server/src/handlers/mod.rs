//! The route handlers of `docs/api.md`, grouped as it groups them.

pub mod admin;
pub mod me;
pub mod ops;
pub mod sessions;
pub mod tokens;
pub mod users;

use time::OffsetDateTime;

/// The current time, to the millisecond: the precision every store keeps, so
/// that a time in a response reads the same when it comes back from the store.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}

/// RFC 3339 in UTC with exactly three fractional digits
/// (`2026-11-22T18:40:00.000Z`): one fixed shape, so times compare as strings.
pub fn rfc3339(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}
