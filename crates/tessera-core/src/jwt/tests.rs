//! Unit tests of signing and strict verification, with a fixed clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::OsRng;
use time::macros::datetime;

use super::*;

const T0: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

fn rules(alg: Alg) -> TokenRules {
    TokenRules {
        issuer: "https://auth.example".into(),
        audience: "https://auth.example".into(),
        alg,
        access_ttl: Duration::minutes(15),
        leeway: Duration::seconds(5),
    }
}

fn ring(alg: Alg) -> (KeyMaterial, KeyRing) {
    let key = KeyMaterial::generate(alg, &mut OsRng).unwrap();
    let ring = KeyRing::new(&key, &[]).unwrap();
    (key, ring)
}

fn claims(rules: &TokenRules) -> AccessClaims {
    rules.claims(
        "usr_1",
        "ada",
        "ses_1",
        T0 + Duration::days(1),
        T0,
        &mut OsRng,
    )
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn split(token: &str) -> (serde_json::Value, serde_json::Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    let dec = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (dec(parts[0]), dec(parts[1]), parts[2].to_owned())
}

#[test]
fn every_algorithm_signs_and_verifies() {
    for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256, Alg::Hs256] {
        let r = rules(alg);
        let (key, ring) = ring(alg);
        let c = claims(&r);
        let token = ring.sign(&c).unwrap();
        let (header, _, _) = split(&token);
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["kid"], key.kid.as_str());
        let v = ring.verify(&r, &token, T0 + Duration::minutes(1)).unwrap();
        assert_eq!(v.claims, c);
        assert_eq!(v.kid, key.kid);
    }
}

#[test]
fn jwks_publishes_public_parts_only() {
    for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256] {
        let (key, ring) = ring(alg);
        let jwks = ring.jwks();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], key.kid.as_str());
        assert_eq!(k["alg"], alg.as_str());
        assert_eq!(k["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "{alg:?} leaks {private}");
        }
    }
    let (_, ring) = ring(Alg::Hs256);
    assert_eq!(ring.jwks(), serde_json::json!({ "keys": [] }));
}

#[test]
fn time_claims_are_checked_with_the_leeway() {
    let r = rules(Alg::EdDsa);
    let (_, ring) = ring(Alg::EdDsa);
    let token = ring.sign(&claims(&r)).unwrap();
    let exp = T0 + Duration::minutes(15);
    assert!(ring.verify(&r, &token, exp + Duration::seconds(4)).is_ok());
    assert_eq!(
        ring.verify(&r, &token, exp + Duration::seconds(5))
            .unwrap_err(),
        Refusal::Expired
    );
    let strict = TokenRules {
        leeway: Duration::ZERO,
        ..r.clone()
    };
    assert_eq!(
        ring.verify(&strict, &token, exp).unwrap_err(),
        Refusal::Expired
    );
    // nbf in the future.
    let mut c = claims(&r);
    c.nbf = (T0 + Duration::minutes(1)).unix_timestamp();
    let token = ring.sign(&c).unwrap();
    assert_eq!(
        ring.verify(&r, &token, T0).unwrap_err(),
        Refusal::NotYetValid
    );
    assert!(ring.verify(&r, &token, T0 + Duration::seconds(56)).is_ok());
}

#[test]
fn a_token_lives_at_least_its_ttl_despite_whole_second_claims() {
    let r = TokenRules {
        access_ttl: Duration::seconds(1),
        ..rules(Alg::EdDsa)
    };
    let late_in_a_second = T0 + Duration::milliseconds(900);
    let c = r.claims(
        "u",
        "n",
        "s",
        T0 + Duration::days(1),
        late_in_a_second,
        &mut OsRng,
    );
    assert_eq!(c.iat, T0.unix_timestamp());
    assert_eq!(
        c.exp,
        T0.unix_timestamp() + 2,
        "rounded up: valid until 1.1 s from now"
    );
    let (_, ring) = ring(Alg::EdDsa);
    let token = ring.sign(&c).unwrap();
    let strict = TokenRules {
        leeway: Duration::ZERO,
        ..r
    };
    assert!(
        ring.verify(
            &strict,
            &token,
            late_in_a_second + Duration::milliseconds(999)
        )
        .is_ok()
    );
    assert_eq!(
        ring.verify(&strict, &token, T0 + Duration::seconds(2))
            .unwrap_err(),
        Refusal::Expired
    );
}

#[test]
fn access_tokens_never_outlive_their_session() {
    let r = rules(Alg::EdDsa);
    let c = r.claims("u", "n", "s", T0 + Duration::minutes(2), T0, &mut OsRng);
    assert_eq!(c.exp, (T0 + Duration::minutes(2)).unix_timestamp());
}

#[test]
fn wrong_issuer_audience_and_type_are_refused() {
    let r = rules(Alg::EdDsa);
    let (_, ring) = ring(Alg::EdDsa);
    let mut c = claims(&r);
    c.iss = "https://evil.example".into();
    assert_eq!(
        ring.verify(&r, &ring.sign(&c).unwrap(), T0).unwrap_err(),
        Refusal::WrongIssuer
    );
    let mut c = claims(&r);
    c.aud = "someone-else".into();
    assert_eq!(
        ring.verify(&r, &ring.sign(&c).unwrap(), T0).unwrap_err(),
        Refusal::WrongAudience
    );
}

#[test]
fn tampering_is_refused() {
    let r = rules(Alg::EdDsa);
    let (_, ring) = ring(Alg::EdDsa);
    let token = ring.sign(&claims(&r)).unwrap();
    let (header, mut payload, sig) = split(&token);
    payload["sub"] = "usr_admin".into();
    let forged = format!("{}.{}.{sig}", b64(&header), b64(&payload));
    assert_eq!(
        ring.verify(&r, &forged, T0).unwrap_err(),
        Refusal::BadSignature
    );
    // Stripped and zeroed signatures.
    let (h, p) = token.rsplit_once('.').unwrap().0.split_once('.').unwrap();
    assert!(ring.verify(&r, &format!("{h}.{p}."), T0).is_err());
    let zeros = URL_SAFE_NO_PAD.encode([0u8; 64]);
    assert_eq!(
        ring.verify(&r, &format!("{h}.{p}.{zeros}"), T0)
            .unwrap_err(),
        Refusal::BadSignature
    );
}

#[test]
fn header_tricks_are_refused() {
    let r = rules(Alg::EdDsa);
    let (key, ring) = ring(Alg::EdDsa);
    let token = ring.sign(&claims(&r)).unwrap();
    let (header, payload, sig) = split(&token);
    let with = |h: serde_json::Value| format!("{}.{}.{sig}", b64(&h), b64(&payload));
    for alg in [
        "none", "None", "NONE", "nOnE", "HS256", "ES256", "RS256", "",
    ] {
        let mut h = header.clone();
        h["alg"] = alg.into();
        assert_eq!(
            ring.verify(&r, &with(h), T0).unwrap_err(),
            Refusal::WrongAlgorithm,
            "{alg}"
        );
    }
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("typ");
    assert_eq!(
        ring.verify(&r, &with(h), T0).unwrap_err(),
        Refusal::WrongType
    );
    let mut h = header.clone();
    h["typ"] = "JWT".into();
    assert_eq!(
        ring.verify(&r, &with(h), T0).unwrap_err(),
        Refusal::WrongType
    );
    let mut h = header.clone();
    h["crit"] = serde_json::json!(["exp"]);
    assert_eq!(
        ring.verify(&r, &with(h), T0).unwrap_err(),
        Refusal::Malformed
    );
    for kid in ["../../etc/passwd", "' OR 1=1 --", "", "unknown"] {
        let mut h = header.clone();
        h["kid"] = kid.into();
        assert_eq!(
            ring.verify(&r, &with(h), T0).unwrap_err(),
            Refusal::UnknownKey,
            "{kid}"
        );
    }
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        ring.verify(&r, &with(h), T0).unwrap_err(),
        Refusal::UnknownKey
    );
    // A jku/jwk header is never followed: the original signature still rules.
    let mut h = header.clone();
    h["jku"] = "http://127.0.0.1:9/jwks.json".into();
    h["jwk"] = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
    // The header changed, so the signature over it no longer matches.
    assert_eq!(
        ring.verify(&r, &with(h), T0).unwrap_err(),
        Refusal::BadSignature
    );
}

#[test]
fn algorithm_confusion_with_the_public_key_as_hmac_secret_fails() {
    for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256] {
        let r = rules(alg);
        let (key, ring) = ring(alg);
        let public = serde_json::to_vec(&key.public_jwk().unwrap()).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid.clone());
        let forged =
            jsonwebtoken::encode(&header, &claims(&r), &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(
            ring.verify(&r, &forged, T0).unwrap_err(),
            Refusal::WrongAlgorithm,
            "{alg:?}"
        );
    }
}

#[test]
fn tokens_of_another_key_are_refused() {
    let r = rules(Alg::EdDsa);
    let (_, ours) = ring(Alg::EdDsa);
    let (_, theirs) = ring(Alg::EdDsa);
    let token = theirs.sign(&claims(&r)).unwrap();
    assert_eq!(
        ours.verify(&r, &token, T0).unwrap_err(),
        Refusal::UnknownKey
    );
}

#[test]
fn rotation_keeps_old_tokens_valid_while_published() {
    let r = rules(Alg::Es256);
    let old = KeyMaterial::generate(Alg::Es256, &mut OsRng).unwrap();
    let new = KeyMaterial::generate(Alg::Es256, &mut OsRng).unwrap();
    let before = KeyRing::new(&old, &[]).unwrap();
    let old_token = before.sign(&claims(&r)).unwrap();
    let after = KeyRing::new(&new, std::slice::from_ref(&old)).unwrap();
    assert!(after.verify(&r, &old_token, T0).is_ok());
    let new_token = after.sign(&claims(&r)).unwrap();
    assert_eq!(after.verify(&r, &new_token, T0).unwrap().kid, new.kid);
    assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2);
    let retired = KeyRing::new(&new, &[]).unwrap();
    assert_eq!(
        retired.verify(&r, &old_token, T0).unwrap_err(),
        Refusal::UnknownKey
    );
}

#[test]
fn junk_is_malformed_never_a_panic() {
    let r = rules(Alg::EdDsa);
    let (_, ring) = ring(Alg::EdDsa);
    for junk in [
        "",
        ".",
        "..",
        "a.b.c",
        "a.b.c.d",
        "tsr_rt_abc",
        "\u{0}.\u{0}.\u{0}",
        &"a".repeat(10_000),
    ] {
        assert!(ring.verify(&r, junk, T0).is_err(), "{junk:?}");
    }
}

#[test]
fn a_published_jwks_verifies_without_private_keys() {
    for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256] {
        let r = rules(alg);
        let (_, ring) = ring(alg);
        let token = ring.sign(&claims(&r)).unwrap();
        let public = KeyRing::from_jwks(&ring.jwks()).unwrap();
        assert!(public.verify(&r, &token, T0).is_ok(), "{alg:?}");
        assert!(public.sign(&claims(&r)).is_err());
    }
    assert!(KeyRing::from_jwks(&serde_json::json!({"nope": 1})).is_err());
}

#[test]
fn an_hmac_ring_verifies_with_the_secret() {
    let r = rules(Alg::Hs256);
    let (key, ring) = ring(Alg::Hs256);
    let token = ring.sign(&claims(&r)).unwrap();
    assert!(
        KeyRing::from_hmac_secret(&key.kid, &key.private)
            .verify(&r, &token, T0)
            .is_ok()
    );
    let wrong = KeyRing::from_hmac_secret(&key.kid, b"another secret");
    assert_eq!(
        wrong.verify(&r, &token, T0).unwrap_err(),
        Refusal::BadSignature
    );
}

#[test]
fn peek_reads_without_verifying() {
    let r = rules(Alg::EdDsa);
    let (_, ring) = ring(Alg::EdDsa);
    let token = ring.sign(&claims(&r)).unwrap();
    let (h, c) = peek(&token).unwrap();
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(c["username"], "ada");
    assert!(peek("nope").is_none());
}
