//! Property tests of the parsers and of token verification: whatever the
//! input, they answer (accept or refuse), never panic, and what they accept
//! has the documented shape.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rand_core::OsRng;
use tessera_core::jwt::{Alg, KeyMaterial, KeyRing, TokenRules};
use tessera_core::refresh::RefreshToken;
use tessera_core::{Password, SessionSecret, Username};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

fn rules() -> TokenRules {
    TokenRules {
        issuer: "https://auth.example".into(),
        audience: "https://auth.example".into(),
        alg: Alg::EdDsa,
        access_ttl: Duration::minutes(15),
        leeway: Duration::seconds(5),
    }
}

proptest! {
    #[test]
    fn usernames_accepted_are_exactly_the_documented_alphabet(raw in "\\PC{0,80}") {
        let ok = Username::parse(&raw).is_ok();
        let rule = (3..=64).contains(&raw.chars().count())
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
        prop_assert_eq!(ok, rule);
    }

    #[test]
    fn passwords_are_judged_by_character_count(raw in "\\PC{0,1100}") {
        let n = raw.chars().count();
        prop_assert_eq!(Password::parse(&raw).is_ok(), (8..=1024).contains(&n));
    }

    #[test]
    fn secret_parsers_accept_only_their_own_prefix(body in "[A-Za-z0-9_-]{43,128}", other in "\\PC{0,60}") {
        let ss = format!("tsr_ss_{body}");
        let rt = format!("tsr_rt_{body}");
        prop_assert!(SessionSecret::parse(&ss).is_some());
        prop_assert!(RefreshToken::parse(&ss).is_none());
        prop_assert!(RefreshToken::parse(&rt).is_some());
        prop_assert!(SessionSecret::parse(&rt).is_none());
        // Arbitrary text is refused unless it happens to have the exact shape.
        let shaped = other.strip_prefix("tsr_ss_").is_some_and(|b| {
            (43..=128).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        });
        prop_assert_eq!(SessionSecret::parse(&other).is_some(), shaped);
    }

    #[test]
    fn verification_of_junk_never_panics_and_never_accepts(junk in "\\PC{0,300}", dots in "[A-Za-z0-9_.-]{0,300}") {
        let key = KeyMaterial::generate(Alg::EdDsa, &mut OsRng).unwrap();
        let ring = KeyRing::new(&key, &[]).unwrap();
        prop_assert!(ring.verify(&rules(), &junk, T0).is_err());
        prop_assert!(ring.verify(&rules(), &dots, T0).is_err());
    }

    #[test]
    fn any_single_character_change_to_a_token_is_refused(pos in 0usize..400, replacement in "[A-Za-z0-9_-]") {
        let key = KeyMaterial::generate(Alg::EdDsa, &mut OsRng).unwrap();
        let ring = KeyRing::new(&key, &[]).unwrap();
        let claims = rules().claims("usr_1", "ada", "ses_1", T0 + Duration::days(1), T0, &mut OsRng);
        let token = ring.sign(&claims).unwrap();
        let pos = pos % token.len();
        let mut bytes = token.clone().into_bytes();
        let new = replacement.as_bytes()[0];
        prop_assume!(bytes[pos] != b'.' && bytes[pos] != new);
        bytes[pos] = new;
        let altered = String::from_utf8(bytes).unwrap();
        // base64url's last character carries padding bits: two encodings can
        // decode to the same bytes. Only a change that alters the bytes counts.
        let decode = |t: &str| -> Vec<Vec<u8>> {
            use base64::Engine;
            t.split('.')
                .map(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap_or_default())
                .collect()
        };
        prop_assume!(decode(&altered) != decode(&token));
        prop_assert!(ring.verify(&rules(), &altered, T0).is_err());
    }
}
