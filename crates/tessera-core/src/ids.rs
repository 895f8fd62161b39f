//! Public identifiers: random, opaque, prefixed by kind (`usr_`, `ses_`).
//!
//! An id is 128 random bits in base64url. Ids are not secrets — a session id
//! appears in the device list and in access tokens — so they are never used to
//! authenticate anything; they only name a record.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Rng;

/// A new id of the form `{prefix}_{22 base64url characters}`.
pub fn new_id(prefix: &str, rng: &mut dyn Rng) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A new user id.
pub fn user_id(rng: &mut dyn Rng) -> String {
    new_id("usr", rng)
}

/// A new session id (public; not the session secret).
pub fn session_id(rng: &mut dyn Rng) -> String {
    new_id("ses", rng)
}

/// Whether `s` could be an id made by [`new_id`] with `prefix`: the prefix,
/// `_` and 22 base64url characters. Anything else names no record, so a
/// caller can answer "not found" without asking a store (and no store sees
/// a NUL byte or a megabyte of text in a key).
pub fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| {
            body.len() == 22
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = user_id(&mut OsRng);
        let b = user_id(&mut OsRng);
        assert!(a.starts_with("usr_") && a.len() == 4 + 22);
        assert_ne!(a, b);
        assert!(session_id(&mut OsRng).starts_with("ses_"));
    }

    #[test]
    fn only_well_formed_ids_are_ids() {
        let id = session_id(&mut OsRng);
        assert!(is_id("ses", &id));
        assert!(!is_id("usr", &id));
        assert!(!is_id("ses", &format!("{id}x")));
        assert!(!is_id("ses", "ses_%00x"));
        assert!(!is_id("ses", "ses_\0AAAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_id("ses", "ses"));
    }
}
