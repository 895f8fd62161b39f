//! Times as the backends store them: Unix milliseconds in a 64-bit integer.

use time::OffsetDateTime;

use crate::{StoreError, StoreResult};

/// `t` in Unix milliseconds (sub-millisecond parts dropped).
pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The time `v` Unix milliseconds; out of range is a corrupt record.
pub fn from_ms(v: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000)
        .map_err(|e| StoreError::Other(Box::new(e)))
}

/// [`from_ms`] of an optional value.
pub fn opt_from_ms(v: Option<i64>) -> StoreResult<Option<OffsetDateTime>> {
    v.map(from_ms).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_to_the_millisecond() {
        let t = time::macros::datetime!(2030-06-01 12:00:00.123_456 UTC);
        assert_eq!(
            from_ms(to_ms(t)).unwrap(),
            time::macros::datetime!(2030-06-01 12:00:00.123 UTC)
        );
        assert!(from_ms(i64::MAX).is_err());
        assert_eq!(opt_from_ms(None).unwrap(), None);
    }
}
