//! Access-token verification (`KeyRing::verify`, what a bearer token and the
//! access-token cookie go through, and `jwt::peek`, what `tessera token
//! decode` reads first).
//!
//! First byte even: the rest is a token string (`$T` stands for a valid
//! one), verified by the app's EdDSA ring and an HS256 ring. Odd: the rest
//! is `header JSON \0 claims JSON`, encoded and correctly signed with the
//! HS256 secret, so the fuzzer reaches the claim checks behind the signature.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use libfuzzer_sys::fuzz_target;
use tessera_core::jwt::{self, Alg, KeyRing, TokenRules};
use tessera_fuzz::{FIXTURE, expand, now};

const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-32";

fn hs_rules() -> TokenRules {
    TokenRules {
        issuer: "https://issuer.example".to_owned(),
        audience: "api".to_owned(),
        alg: Alg::Hs256,
        access_ttl: time::Duration::minutes(15),
        leeway: time::Duration::seconds(30),
    }
}

fn check(ring: &KeyRing, rules: &TokenRules, token: &str) {
    let _ = jwt::peek(token);
    if let Ok(v) = ring.verify(rules, token, now()) {
        // What verify accepted, the claim checks accept on their own.
        assert_eq!(jwt::check_claims(rules, &v.claims, now()), Ok(()));
        assert!(ring.knows(&v.kid));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let f = &*FIXTURE;
    let hs = KeyRing::from_hmac_secret("k1", SECRET);
    if first % 2 == 0 {
        let token = expand(&String::from_utf8_lossy(rest), f);
        check(&f.app.keys.ring(), &f.app.rules, &token);
        check(&hs, &hs_rules(), &token);
        return;
    }
    let (header, claims) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(SECRET) else {
        return;
    };
    mac.update(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    check(&hs, &hs_rules(), &token);
});
