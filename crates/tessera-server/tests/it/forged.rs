//! Forged and malformed tokens: every trick must give 401/400, never 5xx.
//!
//! Each case is a bearer token presented to the real binary over HTTP, on
//! three routes that verify access tokens: `GET /v1/me` and
//! `GET /v1/auth/verify` must answer `401` (junk may get `400`), and admin
//! introspection must say `{"active": false}`. Failures are collected and
//! reported together, each with its token, so one run shows every hole.
//!
//! The forgeries start from a real token of a real login and re-encode its
//! parts: `alg: none`, tampered claims under the original signature,
//! stripped, zeroed, truncated and malleated signatures, HS256 signed with
//! the server's own public key in every form an attacker could take it in
//! (algorithm confusion), attacker keys in `jwk`, `jku`, `x5u` and `x5c`
//! headers (the URLs point at a listener that must never be contacted),
//! `kid` injection, `typ` and `crit` games, tokens of other instances and
//! issuers (including one that shares the signing key but not the issuer or
//! audience), swapped token kinds and plain junk. Every suite ends by showing
//! that the untouched token still works, so it can fail.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::support::*;

/// Admin key of every server here, for introspection.
const ADMIN_KEY: &str = "forged-suite-admin-key-0123456789";

/// The issuer every suite server is given explicitly.
const ISSUER: &str = "http://127.0.0.1:7480";

/// Order of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Order of the Ed25519 group, little-endian (as `S` is encoded).
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

// ---------------------------------------------------------------- encoding

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("base64url {s:?}: {e}"))
}

fn json_b64(v: &Value) -> String {
    b64(serde_json::to_vec(v).unwrap())
}

fn hs256(secret: &[u8], input: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, input.as_bytes())
        .as_ref()
        .to_vec()
}

/// A compact JWS `h.c.s` from a header and claims (any JSON) and a signature
/// made by `sign` over the encoded header and claims.
fn signed(header: &Value, claims: &Value, sign: impl FnOnce(&str) -> Vec<u8>) -> String {
    let input = format!("{}.{}", json_b64(header), json_b64(claims));
    let sig = sign(&input);
    format!("{input}.{}", b64(sig))
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap());
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap());
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER holding the unsigned big-endian `bytes`.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::new();
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// A real token cut into its parts.
#[derive(Clone)]
struct Jws {
    raw: String,
    h: String,
    c: String,
    s: String,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl Jws {
    fn parse(token: &str) -> Self {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a compact JWS: {token}");
        Self {
            raw: token.to_owned(),
            h: parts[0].to_owned(),
            c: parts[1].to_owned(),
            s: parts[2].to_owned(),
            header: serde_json::from_slice(&unb64(parts[0])).unwrap(),
            claims: serde_json::from_slice(&unb64(parts[1])).unwrap(),
        }
    }

    fn sig(&self) -> Vec<u8> {
        unb64(&self.s)
    }

    fn input(&self) -> String {
        format!("{}.{}", self.h, self.c)
    }

    fn alg(&self) -> &str {
        self.header["alg"].as_str().unwrap()
    }

    fn kid(&self) -> &str {
        self.header["kid"].as_str().unwrap()
    }

    /// The header with `edits` applied: `Some` sets a member, `None` removes it.
    fn header_with(&self, edits: &[(&str, Option<Value>)]) -> Value {
        edit(&self.header, edits)
    }

    fn claims_with(&self, edits: &[(&str, Option<Value>)]) -> Value {
        edit(&self.claims, edits)
    }

    fn header_value(&self) -> Value {
        Value::Object(self.header.clone())
    }

    fn claims_value(&self) -> Value {
        Value::Object(self.claims.clone())
    }
}

fn edit(map: &Map<String, Value>, edits: &[(&str, Option<Value>)]) -> Value {
    let mut map = map.clone();
    for (k, v) in edits {
        match v {
            Some(v) => map.insert((*k).to_owned(), v.clone()),
            None => map.remove(*k),
        };
    }
    Value::Object(map)
}

// ------------------------------------------------------------------- cases

/// A forged token and what it tries. Junk may get `400` where a well-formed
/// forgery must get `401`.
struct Case {
    name: String,
    token: String,
    junk: bool,
}

#[derive(Default)]
struct Cases(Vec<Case>);

impl Cases {
    fn add(&mut self, name: impl Into<String>, token: impl Into<String>) {
        self.0.push(Case {
            name: name.into(),
            token: token.into(),
            junk: false,
        });
    }

    fn junk(&mut self, name: impl Into<String>, token: impl Into<String>) {
        self.0.push(Case {
            name: name.into(),
            token: token.into(),
            junk: true,
        });
    }
}

fn shorten(token: &str) -> String {
    if token.len() <= 400 {
        token.to_owned()
    } else {
        let mut end = 200;
        while !token.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &token[..end], token.len())
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        AUTHORIZATION,
        HeaderValue::from_bytes(format!("Bearer {token}").as_bytes())
            .unwrap_or_else(|e| panic!("not a header value ({e}): {token:?}")),
    );
    map
}

/// Presents one case on every verifying route; returns what went wrong.
async fn check(server: &Server, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let allowed: &[u16] = if case.junk { &[401, 400] } else { &[401] };

    let res = server.get("/v1/me", bearer(&case.token)).await;
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap_or_default();
    if !allowed.contains(&status) {
        problems.push(format!("GET /v1/me -> {status} {text}"));
    } else if status == 401 {
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if body["error"] != "unauthenticated" {
            problems.push(format!("GET /v1/me -> 401 with body {text}"));
        }
        if !www.starts_with("Bearer") {
            problems.push(format!("GET /v1/me -> 401 with WWW-Authenticate {www:?}"));
        }
        if !case.junk && !www.contains("error=\"invalid_token\"") {
            problems.push(format!("GET /v1/me -> 401 with WWW-Authenticate {www:?}"));
        }
    }

    let res = server.get("/v1/auth/verify", bearer(&case.token)).await;
    let status = res.status().as_u16();
    let leaked = res.headers().get("x-auth-user-id").cloned();
    if !allowed.contains(&status) || leaked.is_some() {
        let text = res.text().await.unwrap_or_default();
        problems.push(format!(
            "GET /v1/auth/verify -> {status} (X-Auth-User-Id {leaked:?}) {text}"
        ));
    }

    let res = server
        .request(
            Method::POST,
            "/v1/tokens/introspect",
            headers([("authorization", &format!("Bearer {ADMIN_KEY}"))]),
            Some(&json!({ "token": case.token })),
        )
        .await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let ok = (status == 200 && body == json!({ "active": false })) || (case.junk && status == 400);
    if !ok {
        problems.push(format!("POST /v1/tokens/introspect -> {status} {text}"));
    }
    problems
}

/// Runs every case, then panics with all failures at once.
async fn run_all(server: &Server, label: &str, originals: &[&str], cases: &Cases) {
    let mut report = String::new();
    let mut failed = 0;
    for case in &cases.0 {
        assert!(
            !originals.contains(&case.token.as_str()),
            "test bug: case {:?} is an untouched token",
            case.name
        );
        let problems = check(server, case).await;
        if !problems.is_empty() {
            failed += 1;
            let _ = writeln!(report, "\n* {} — {}", case.name, problems.join("; "));
            let _ = writeln!(report, "  token: {}", shorten(&case.token));
        }
    }
    assert!(
        failed == 0,
        "{label}: {failed} of {} forged tokens were not refused:{report}\nserver log:\n{}",
        cases.0.len(),
        server.log()
    );
}

// ----------------------------------------------------------------- servers

struct Account {
    name: String,
    id: String,
    access: String,
    refresh: String,
}

async fn token_login(server: &Server, name: &str) -> (String, String) {
    let (status, body) = status_json(
        server
            .post_json(
                "/v1/tokens",
                &json!({ "username": name, "password": PASSWORD }),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "token login as {name}: {body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn account(server: &Server, prefix: &str) -> Account {
    let name = unique(prefix);
    let id = register(server, &name).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (access, refresh) = token_login(server, &name).await;
    Account {
        name,
        id,
        access,
        refresh,
    }
}

async fn me(server: &Server, token: &str) -> (u16, Value) {
    call(server, Method::GET, "/v1/me", bearer(token), None).await
}

async fn assert_accepted(server: &Server, token: &str, username: &str) {
    let got = me(server, token).await;
    assert_eq!(got.0, 200, "the untouched token must work: {}", got.1);
    assert_eq!(got.1["user"]["username"], username, "{}", got.1);
    assert_eq!(got.1["auth"]["method"], "bearer", "{}", got.1);
}

async fn jwks_of(server: &Server) -> (String, Value) {
    let res = server.get("/.well-known/jwks.json", HeaderMap::new()).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

// --------------------------------------------------------- attacker keys

/// A key the attacker made, of the same family as the server's.
enum AttackerKey {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Hmac(Vec<u8>),
}

struct Attacker {
    alg: &'static str,
    key: AttackerKey,
}

impl Attacker {
    fn generate(alg: &str) -> Self {
        let rng = SystemRandom::new();
        match alg {
            "EdDSA" => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap();
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
                Self {
                    alg: "EdDSA",
                    key: AttackerKey::Ed(pair),
                }
            }
            "ES256" => {
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                        .unwrap();
                Self {
                    alg: "ES256",
                    key: AttackerKey::Ec(pair),
                }
            }
            "RS256" => Self {
                alg: "RS256",
                key: AttackerKey::Rsa(
                    RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
                ),
            },
            "HS256" => Self {
                alg: "HS256",
                key: AttackerKey::Hmac(b"attacker chosen hmac secret, 32b".to_vec()),
            },
            other => panic!("no attacker key for {other}"),
        }
    }

    /// The public JWK (for HMAC: the secret, as a `jwk` header would carry it).
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = match &self.key {
            AttackerKey::Ed(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
            }
            AttackerKey::Ec(pair) => {
                let point = pair.public_key().as_ref();
                json!({ "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]) })
            }
            AttackerKey::Rsa(pair) => {
                let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({ "kty": "RSA", "n": b64(&c.n), "e": b64(&c.e) })
            }
            AttackerKey::Hmac(secret) => json!({ "kty": "oct", "k": b64(secret) }),
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(self.alg);
        jwk["use"] = json!("sig");
        jwk
    }

    fn sign(&self, input: &str) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            AttackerKey::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            AttackerKey::Ec(pair) => pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            AttackerKey::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            AttackerKey::Hmac(secret) => hs256(secret, input),
        }
    }

    fn token(&self, header: &Value, claims: &Value) -> String {
        signed(header, claims, |input| self.sign(input))
    }
}

// ------------------------------------------------------------ the listener

/// A local HTTP listener standing in for an attacker's key server: it serves
/// a JWK set to anyone and counts who asked.
struct Snitch {
    base: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Snitch {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf)).await;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self { base, hits, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Snitch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ------------------------------------------------------- the case builders

const NONE_SPELLINGS: [&str; 4] = ["none", "None", "NONE", "nOnE"];

fn alg_games(jws: &Jws, cases: &mut Cases) {
    for none in NONE_SPELLINGS {
        let h = json_b64(&jws.header_with(&[("alg", Some(json!(none)))]));
        cases.add(
            format!("alg {none}, empty signature"),
            format!("{h}.{}.", jws.c),
        );
        cases.add(
            format!("alg {none}, original signature"),
            format!("{h}.{}.{}", jws.c, jws.s),
        );
        cases.add(
            format!("alg {none}, no signature part"),
            format!("{h}.{}", jws.c),
        );
        // The textbook forgery: a bare header and claims of someone else.
        let bare = json_b64(&json!({ "alg": none, "typ": "JWT" }));
        cases.add(
            format!("alg {none}, bare header, empty signature"),
            format!("{bare}.{}.", jws.c),
        );
        let h = json_b64(&jws.header_with(&[("alg", Some(json!(none))), ("kid", None)]));
        cases.add(
            format!("alg {none} without kid, empty signature"),
            format!("{h}.{}.", jws.c),
        );
    }
    let own = jws.alg().to_owned();
    let mut others: Vec<Value> = [
        "HS256", "HS384", "HS512", "RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA",
        "Ed25519", "ES256K", "",
    ]
    .into_iter()
    .filter(|a| *a != own)
    .map(|a| json!(a))
    .collect();
    others.extend([
        json!(own.to_lowercase()),
        json!(own.to_uppercase()),
        json!(format!("{own} ")),
        json!(format!(" {own}")),
        json!(format!("{own}\u{0}")),
        json!(null),
        json!(1),
        json!([own]),
        json!({ "alg": own }),
    ]);
    for alg in others {
        if alg == json!(own) {
            continue;
        }
        let h = json_b64(&jws.header_with(&[("alg", Some(alg.clone()))]));
        cases.add(
            format!("alg {alg}, original signature"),
            format!("{h}.{}.{}", jws.c, jws.s),
        );
    }
    let h = json_b64(&jws.header_with(&[("alg", None)]));
    cases.add("alg removed", format!("{h}.{}.{}", jws.c, jws.s));
    cases.add("alg removed, no signature", format!("{h}.{}.", jws.c));
    // Duplicate members: a parser that keeps the first and one that keeps
    // the last must not disagree in the forger's favour.
    let kid = jws.kid();
    for raw in [
        format!(r#"{{"alg":"none","alg":"{own}","typ":"at+jwt","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"{own}","alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"{own}","typ":"at+jwt","typ":"JWT","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"{own}","typ":"at+jwt","kid":"{kid}","kid":"x"}}"#),
    ] {
        cases.add(
            format!("duplicate header members {raw}, original signature"),
            format!("{}.{}.{}", b64(&raw), jws.c, jws.s),
        );
        cases.add(
            format!("duplicate header members {raw}, empty signature"),
            format!("{}.{}.", b64(&raw), jws.c),
        );
    }
}

fn claim_games(jws: &Jws, other: &Jws, other_id: &str, other_name: &str, cases: &mut Cases) {
    let h = &jws.h;
    let s = &jws.s;
    let now = jws.claims["iat"].as_i64().unwrap();
    let tampered: Vec<(String, Value)> = vec![
        (
            "sub of another user".into(),
            jws.claims_with(&[("sub", Some(json!(other_id)))]),
        ),
        (
            "username of another user".into(),
            jws.claims_with(&[("username", Some(json!(other_name)))]),
        ),
        (
            "sub and username of another user".into(),
            jws.claims_with(&[
                ("sub", Some(json!(other_id))),
                ("username", Some(json!(other_name))),
            ]),
        ),
        (
            "sid of another user's session".into(),
            jws.claims_with(&[("sid", other.claims.get("sid").cloned())]),
        ),
        ("every claim of another user".into(), other.claims_value()),
        (
            "exp a year later".into(),
            jws.claims_with(&[("exp", Some(json!(now + 365 * 86_400)))]),
        ),
        ("exp removed".into(), jws.claims_with(&[("exp", None)])),
        (
            "iss changed".into(),
            jws.claims_with(&[("iss", Some(json!("http://evil.example")))]),
        ),
        (
            "aud as an array with the real audience".into(),
            jws.claims_with(&[("aud", Some(json!([jws.claims["aud"], "x"])))]),
        ),
        (
            "extra admin claims".into(),
            jws.claims_with(&[
                ("admin", Some(json!(true))),
                ("scope", Some(json!("admin"))),
            ]),
        ),
        (
            "nbf and iat far in the past".into(),
            jws.claims_with(&[("nbf", Some(json!(0))), ("iat", Some(json!(0)))]),
        ),
    ];
    for (name, claims) in tampered {
        cases.add(
            format!("claims tampered ({name}), original signature"),
            format!("{h}.{}.{s}", json_b64(&claims)),
        );
    }
    // Same claims, other bytes: the signature covers bytes, not meaning.
    let pretty = serde_json::to_string_pretty(&jws.claims_value()).unwrap();
    cases.add(
        "identical claims re-serialised (pretty), original signature",
        format!("{h}.{}.{s}", b64(&pretty)),
    );
    let mut spaced = String::from_utf8(unb64(&jws.c)).unwrap();
    spaced.push(' ');
    cases.add(
        "identical claims plus a trailing space, original signature",
        format!("{h}.{}.{s}", b64(&spaced)),
    );
    cases.add(
        "the other user's claims with this header and signature",
        format!("{h}.{}.{s}", other.c),
    );
    cases.add(
        "this header and claims with the other user's signature",
        format!("{h}.{}.{}", jws.c, other.s),
    );
    // Numbers and shapes a claims parser might choke on.
    let original = String::from_utf8(unb64(&jws.c)).unwrap();
    let exp = jws.claims["exp"].to_string();
    for weird in [
        "99999999999999999999999999999999",
        "18446744073709551616",
        "9223372036854775808",
        "-9223372036854775809",
        "1e999",
        "1e308",
        "-1",
        "0",
        "1.5",
        "\"never\"",
        "null",
        "[]",
        "{}",
        "true",
    ] {
        let raw = original.replacen(&format!("\"exp\":{exp}"), &format!("\"exp\":{weird}"), 1);
        assert_ne!(raw, original, "claims must contain \"exp\":{exp}");
        cases.add(
            format!("exp {weird}, original signature"),
            format!("{h}.{}.{s}", b64(&raw)),
        );
    }
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for (name, raw) in [
        ("claims null", "null".to_owned()),
        ("claims an array", "[]".to_owned()),
        ("claims a string", "\"x\"".to_owned()),
        ("claims empty object", "{}".to_owned()),
        ("claims empty", String::new()),
        ("claims not JSON", "{\"sub\":".to_owned()),
        ("claims nested 5000 deep", nested.clone()),
        (
            "claims with a nested 5000-deep member",
            original.replacen('{', &format!("{{\"x\":{nested},"), 1),
        ),
    ] {
        cases.add(
            format!("{name}, original signature"),
            format!("{h}.{}.{s}", b64(&raw)),
        );
    }
}

fn signature_games(jws: &Jws, cases: &mut Cases) {
    let h = &jws.h;
    let c = &jws.c;
    let input = jws.input();
    let sig = jws.sig();
    let n = sig.len();
    cases.add("signature stripped", format!("{input}."));
    cases.add("signature part missing", input.clone());
    cases.add("signature zeroed", format!("{input}.{}", b64(vec![0; n])));
    cases.add(
        "signature all ones",
        format!("{input}.{}", b64(vec![0xff; n])),
    );
    cases.add("signature one zero byte", format!("{input}.AA"));
    cases.add(
        "signature truncated by one character",
        format!("{input}.{}", &jws.s[..jws.s.len() - 1]),
    );
    cases.add(
        "signature truncated by one byte",
        format!("{input}.{}", b64(&sig[..n - 1])),
    );
    cases.add(
        "signature truncated to half",
        format!("{input}.{}", b64(&sig[..n / 2])),
    );
    let mut longer = sig.clone();
    longer.push(0);
    cases.add(
        "signature with a byte appended",
        format!("{input}.{}", b64(&longer)),
    );
    cases.add(
        "signature twice",
        format!("{input}.{}", b64([sig.clone(), sig.clone()].concat())),
    );
    for (i, name) in [(0, "first"), (n - 1, "last")] {
        let mut flipped = sig.clone();
        flipped[i] ^= 1;
        cases.add(
            format!("signature with the {name} bit flipped"),
            format!("{input}.{}", b64(&flipped)),
        );
    }
    cases.add(
        "signature padded base64url",
        format!("{input}.{}", URL_SAFE.encode(&sig)),
    );
    let std_sig = STANDARD.encode(&sig);
    if std_sig.contains(['+', '/']) {
        cases.add("signature in standard base64", format!("{input}.{std_sig}"));
    }
    let padded = URL_SAFE.encode(unb64(h));
    if padded.ends_with('=') {
        cases.add("header padded base64url", format!("{padded}.{c}.{}", jws.s));
    }
    match jws.alg() {
        "EdDSA" => {
            assert_eq!(n, 64);
            // 64 zero bytes is covered above; here S + L (non-canonical S,
            // the classic Ed25519 malleability) and R = identity.
            let mut malleated = sig.clone();
            let mut carry = 0u16;
            for (i, l) in ED25519_L.iter().enumerate() {
                let sum = u16::from(malleated[32 + i]) + u16::from(*l) + carry;
                malleated[32 + i] = (sum & 0xff) as u8;
                carry = sum >> 8;
            }
            assert_eq!(carry, 0);
            cases.add(
                "EdDSA signature with S + L (non-canonical)",
                format!("{input}.{}", b64(&malleated)),
            );
            let mut identity = vec![0u8; 64];
            identity[0] = 1;
            cases.add(
                "EdDSA signature R = identity point, S = 0",
                format!("{input}.{}", b64(&identity)),
            );
        }
        "ES256" => {
            assert_eq!(n, 64);
            cases.add(
                "ES256 signature r = s = n (group order)",
                format!("{input}.{}", b64([P256_N, P256_N].concat())),
            );
            let mut one = [0u8; 32];
            one[31] = 1;
            cases.add(
                "ES256 signature r = s = 1",
                format!("{input}.{}", b64([one, one].concat())),
            );
            cases.add(
                "ES256 signature r = 0, s = real s",
                format!("{input}.{}", b64([&[0u8; 32][..], &sig[32..]].concat())),
            );
            // The same (r, s) in ASN.1 DER rather than JOSE's fixed r || s.
            let der_sig = der(0x30, &[der_uint(&sig[..32]), der_uint(&sig[32..])].concat());
            cases.add(
                "ES256 signature DER-encoded",
                format!("{input}.{}", b64(&der_sig)),
            );
        }
        "RS256" => {
            assert_eq!(n, 256);
            let mut one = vec![0u8; n];
            one[n - 1] = 1;
            cases.add("RS256 signature s = 1", format!("{input}.{}", b64(&one)));
            cases.add(
                "RS256 signature without its leading byte",
                format!("{input}.{}", b64(&sig[1..])),
            );
            cases.add(
                "RS256 signature with a leading zero byte",
                format!("{input}.{}", b64([&[0u8][..], &sig].concat())),
            );
        }
        _ => {}
    }
}

fn header_games(jws: &Jws, snitch: &Snitch, cases: &mut Cases) {
    let c = &jws.c;
    let s = &jws.s;
    let kid = jws.kid().to_owned();
    for (name, typ) in [
        ("removed", None),
        ("JWT", Some(json!("JWT"))),
        ("jwt", Some(json!("jwt"))),
        ("application/jwt", Some(json!("application/jwt"))),
        ("at+jwt with NUL", Some(json!("at+jwt\u{0}"))),
        ("at+jwt with a space", Some(json!("at+jwt "))),
        ("null", Some(json!(null))),
        ("a number", Some(json!(1))),
        ("an array", Some(json!(["at+jwt"]))),
        ("JOSE", Some(json!("JOSE"))),
    ] {
        let h = json_b64(&jws.header_with(&[("typ", typ)]));
        cases.add(
            format!("typ {name}, original signature"),
            format!("{h}.{c}.{s}"),
        );
    }
    for (name, crit) in [
        ("[\"exp\"]", json!(["exp"])),
        ("[\"b64\"] with b64 false", json!(["b64"])),
        ("[]", json!([])),
        ("a string", json!("x")),
        ("unknown extension", json!(["urn:example:must-understand"])),
    ] {
        let h = json_b64(&jws.header_with(&[("crit", Some(crit)), ("b64", Some(json!(false)))]));
        cases.add(
            format!("crit {name}, original signature"),
            format!("{h}.{c}.{s}"),
        );
    }
    let long = "k".repeat(5000);
    let very_long = "k".repeat(20_000);
    let kids: Vec<(String, Option<Value>)> = vec![
        (
            "kid ../../../../dev/null".into(),
            Some(json!("../../../../dev/null")),
        ),
        ("kid /dev/null".into(), Some(json!("/dev/null"))),
        ("kid ../tessera.key".into(), Some(json!("../tessera.key"))),
        ("kid SQL injection".into(), Some(json!("' OR '1'='1"))),
        (
            "kid SQL union".into(),
            Some(json!("x' UNION SELECT 'secret' --")),
        ),
        ("kid NUL".into(), Some(json!("\u{0}"))),
        (
            "kid real kid + NUL".into(),
            Some(json!(format!("{kid}\u{0}"))),
        ),
        (
            "kid real kid + space".into(),
            Some(json!(format!("{kid} "))),
        ),
        ("kid upper-cased".into(), Some(json!(kid.to_uppercase()))),
        ("kid shell".into(), Some(json!("|cat /etc/passwd"))),
        (
            "kid JNDI to the listener".into(),
            Some(json!(format!("${{jndi:ldap://{}/x}}", &snitch.base[7..]))),
        ),
        (
            "kid URL of the listener".into(),
            Some(json!(snitch.url("/jwks.json"))),
        ),
        ("kid empty".into(), Some(json!(""))),
        ("kid 5000 characters".into(), Some(json!(long))),
        ("kid 20000 characters".into(), Some(json!(very_long))),
        ("kid a number".into(), Some(json!(123))),
        ("kid null".into(), Some(json!(null))),
        ("kid true".into(), Some(json!(true))),
        ("kid an array".into(), Some(json!([kid]))),
        ("kid an object".into(), Some(json!({ "kid": kid }))),
        ("kid removed".into(), None),
    ];
    for (name, value) in kids {
        let header = jws.header_with(&[("kid", value.clone())]);
        let h = json_b64(&header);
        cases.add(
            format!("{name}, original signature"),
            format!("{h}.{c}.{s}"),
        );
        // The /dev/null trick: an empty key file makes an empty HMAC secret.
        let header = jws.header_with(&[("kid", value), ("alg", Some(json!("HS256")))]);
        cases.add(
            format!("{name}, HS256 with an empty secret"),
            signed(&header, &jws.claims_value(), |i| hs256(b"", i)),
        );
    }
}

/// HS256 with guessable or public secrets, on every server.
fn guessed_secrets(jws: &Jws, cases: &mut Cases) {
    let kid = jws.kid().to_owned();
    let header = jws.header_with(&[("alg", Some(json!("HS256")))]);
    for (name, secret) in [
        ("empty", b"".to_vec()),
        ("\"secret\"", b"secret".to_vec()),
        ("\"tessera\"", b"tessera".to_vec()),
        ("the kid", kid.as_bytes().to_vec()),
        ("the admin key", ADMIN_KEY.as_bytes().to_vec()),
        ("32 zero bytes", vec![0; 32]),
        ("an empty JWK set", b"{\"keys\":[]}".to_vec()),
    ] {
        cases.add(
            format!("HS256 signed with {name} as the secret"),
            signed(&header, &jws.claims_value(), |i| hs256(&secret, i)),
        );
    }
}

/// The server's public key in every form an attacker could feed to HMAC.
/// Each form is first checked to be the real key (it verifies the real
/// token), so the confusion cases cannot pass by being wrong keys.
fn public_key_forms(jws: &Jws, jwks_text: &str, jwks: &Value) -> Vec<(String, Vec<u8>)> {
    let keys = jwks["keys"].as_array().unwrap();
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == jws.kid())
        .unwrap_or_else(|| panic!("kid {} not in the JWKS {jwks_text}", jws.kid()));
    assert_eq!(jwk["alg"], jws.alg(), "{jwk}");
    assert_eq!(jwk["use"], "sig", "{jwk}");
    assert!(
        jwk.get("d").is_none(),
        "private material in the JWKS: {jwk}"
    );

    let mut forms: Vec<(String, Vec<u8>)> = vec![
        ("the whole JWKS body".into(), jwks_text.as_bytes().to_vec()),
        (
            "the JWK re-serialised compactly".into(),
            serde_json::to_vec(jwk).unwrap(),
        ),
        (
            "the JWK re-serialised pretty".into(),
            serde_json::to_vec_pretty(jwk).unwrap(),
        ),
    ];
    if keys.len() == 1 {
        // The key object exactly as served.
        let start = jwks_text.find('[').unwrap() + 1;
        let end = jwks_text.rfind(']').unwrap();
        forms.push((
            "the JWK text as served".into(),
            jwks_text.as_bytes()[start..end].to_vec(),
        ));
    }
    let field = |name: &str| -> (String, Vec<u8>) {
        let text = jwk[name].as_str().unwrap().to_owned();
        let bytes = unb64(&text);
        (text, bytes)
    };
    let input = jws.input();
    let sig = jws.sig();
    let (parsed, rsa_pkcs1) = match jws.alg() {
        "EdDSA" => {
            let (x_text, x) = field("x");
            forms.push(("raw x".into(), x.clone()));
            forms.push(("x as base64url text".into(), x_text.into_bytes()));
            (ParsedPublicKey::new(&ED25519, &x).unwrap(), None)
        }
        "ES256" => {
            let (x_text, x) = field("x");
            let (y_text, y) = field("y");
            let point = [&[4u8][..], &x, &y].concat();
            forms.push(("raw x".into(), x.clone()));
            forms.push(("raw x || y".into(), [x.clone(), y.clone()].concat()));
            forms.push(("uncompressed point 04 || x || y".into(), point.clone()));
            forms.push(("x as base64url text".into(), x_text.into_bytes()));
            forms.push(("y as base64url text".into(), y_text.into_bytes()));
            (
                ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).unwrap(),
                None,
            )
        }
        "RS256" => {
            let (n_text, n) = field("n");
            let (_, e) = field("e");
            forms.push(("raw n".into(), n.clone()));
            forms.push(("n as base64url text".into(), n_text.into_bytes()));
            let pkcs1 = der(0x30, &[der_uint(&n), der_uint(&e)].concat());
            (
                ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &pkcs1).unwrap(),
                Some(pkcs1),
            )
        }
        other => panic!("no public key for {other}"),
    };
    parsed
        .verify_sig(input.as_bytes(), &sig)
        .expect("the key rebuilt from the JWKS verifies the real token");
    let spki = parsed.as_der().unwrap().as_ref().to_vec();
    let spki_pem = pem("PUBLIC KEY", &spki);
    // The DER is a complete key of its own (what a PEM file would hold)...
    let verification: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match jws.alg() {
        "EdDSA" => &ED25519,
        "ES256" => &ECDSA_P256_SHA256_FIXED,
        _ => &RSA_PKCS1_2048_8192_SHA256,
    };
    ParsedPublicKey::new(verification, &spki)
        .unwrap()
        .verify_sig(input.as_bytes(), &sig)
        .expect("the SubjectPublicKeyInfo verifies the real token");
    // ...and the PEM is that DER.
    let pem_body: String = spki_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(STANDARD.decode(pem_body).unwrap(), spki);

    forms.push(("SubjectPublicKeyInfo DER".into(), spki.clone()));
    forms.push((
        "SubjectPublicKeyInfo PEM".into(),
        spki_pem.clone().into_bytes(),
    ));
    forms.push((
        "SubjectPublicKeyInfo PEM without the final newline".into(),
        spki_pem.trim_end().as_bytes().to_vec(),
    ));
    forms.push((
        "SubjectPublicKeyInfo PEM with CRLF".into(),
        spki_pem.replace('\n', "\r\n").into_bytes(),
    ));
    if let Some(pkcs1) = rsa_pkcs1 {
        let pkcs1_pem = pem("RSA PUBLIC KEY", &pkcs1);
        forms.push(("PKCS#1 RSAPublicKey DER".into(), pkcs1));
        forms.push(("PKCS#1 RSAPublicKey PEM".into(), pkcs1_pem.into_bytes()));
    }
    forms
}

fn key_confusion(jws: &Jws, jwks_text: &str, jwks: &Value, cases: &mut Cases) {
    let forms = public_key_forms(jws, jwks_text, jwks);
    assert!(forms.len() >= 8, "{} key forms", forms.len());
    for (name, secret) in forms {
        for (variant, header) in [
            ("", jws.header_with(&[("alg", Some(json!("HS256")))])),
            (
                ", no kid",
                jws.header_with(&[("alg", Some(json!("HS256"))), ("kid", None)]),
            ),
        ] {
            cases.add(
                format!("HS256 signed with the server's public key ({name}){variant}"),
                signed(&header, &jws.claims_value(), |i| hs256(&secret, i)),
            );
        }
    }
}

/// Attacker-signed tokens that carry or point at the attacker's key.
fn attacker_keys(jws: &Jws, attacker: &Attacker, snitch: &Snitch, cases: &mut Cases) {
    let server_kid = jws.kid().to_owned();
    let claims = jws.claims_value();
    let typ = Some(json!("at+jwt"));
    let alg = Some(json!(attacker.alg));
    cases.add(
        "attacker key, no hint at all",
        attacker.token(&jws.header_value(), &claims),
    );
    for (kid_name, kid) in [
        ("the server's kid", Some(json!(server_kid))),
        ("the attacker's kid", Some(json!("attacker-key"))),
        ("no kid", None),
    ] {
        let jwk = attacker.jwk(
            kid.as_ref()
                .and_then(Value::as_str)
                .unwrap_or("attacker-key"),
        );
        let header = edit(
            &Map::new(),
            &[
                ("alg", alg.clone()),
                ("typ", typ.clone()),
                ("kid", kid.clone()),
                ("jwk", Some(jwk.clone())),
            ],
        );
        cases.add(
            format!("attacker key embedded as jwk, {kid_name}"),
            attacker.token(&header, &claims),
        );
        let header = edit(
            &Map::new(),
            &[
                ("alg", alg.clone()),
                ("typ", typ.clone()),
                ("kid", kid.clone()),
                ("jku", Some(json!(snitch.url("/jwks.json")))),
            ],
        );
        cases.add(
            format!("attacker key at a jku URL, {kid_name}"),
            attacker.token(&header, &claims),
        );
        let header = edit(
            &Map::new(),
            &[
                ("alg", alg.clone()),
                ("typ", typ.clone()),
                ("kid", kid.clone()),
                ("x5u", Some(json!(snitch.url("/cert.pem")))),
            ],
        );
        cases.add(
            format!("attacker key at an x5u URL, {kid_name}"),
            attacker.token(&header, &claims),
        );
        let header = edit(
            &Map::new(),
            &[
                ("alg", alg.clone()),
                ("typ", typ.clone()),
                ("kid", kid.clone()),
                ("jku", Some(json!(snitch.url("/jwks.json")))),
                ("x5u", Some(json!(snitch.url("/cert.pem")))),
                ("jwk", Some(jwk)),
                ("x5c", Some(json!([STANDARD.encode(b"not a certificate")]))),
                ("x5t#S256", Some(json!(b64([7u8; 32])))),
            ],
        );
        cases.add(
            format!("attacker key with every key-locating header, {kid_name}"),
            attacker.token(&header, &claims),
        );
    }
    // Real keys pointed at by URL headers on a token whose own signature is
    // real but whose header was edited to add them.
    for (name, member, url) in [
        ("jku", "jku", snitch.url("/jwks.json")),
        ("x5u", "x5u", snitch.url("/cert.pem")),
    ] {
        let h = json_b64(&jws.header_with(&[(member, Some(json!(url)))]));
        cases.add(
            format!("{name} added to the real header, original signature"),
            format!("{h}.{}.{}", jws.c, jws.s),
        );
    }
}

/// The brief's Ed25519 attacker, signed with `jsonwebtoken` itself: its own
/// public key in the `jwk` header, the server's `kid`.
fn jsonwebtoken_ed25519_attacker(jws: &Jws, cases: &mut Cases) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(jws.kid().to_owned());
    header.jwk = Some(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).unwrap(),
    );
    let token = jsonwebtoken::encode(&header, &jws.claims_value(), &key).unwrap();
    cases.add(
        "Ed25519 attacker key (jsonwebtoken) in jwk, server's kid",
        token,
    );
}

fn junk(jws: &Jws, cases: &mut Cases) {
    let t = &jws.raw;
    let arr = b64("[]");
    let long_a = "a".repeat(10 * 1024);
    let fat_claims = jws.claims_with(&[("pad", Some(json!("p".repeat(9000))))]);
    for (name, token) in [
        ("empty", String::new()),
        ("a", "a".to_owned()),
        ("a.b", "a.b".to_owned()),
        ("a.b.c", "a.b.c".to_owned()),
        ("....", "....".to_owned()),
        ("..", "..".to_owned()),
        ("10 KB of a", long_a),
        ("non-ASCII", "ñ.ü.é".to_owned()),
        ("emoji", "🔑.🔑.🔑".to_owned()),
        ("BOM before the token", format!("\u{feff}{t}")),
        ("base64 of JSON arrays", format!("{arr}.{arr}.{arr}")),
        (
            "base64 of JSON numbers",
            format!("{}.{}.{}", b64("1"), b64("2"), b64("3")),
        ),
        (
            "base64 of null",
            format!("{}.{}.", b64("null"), b64("null")),
        ),
        (
            "base64 of empty objects",
            format!("{}.{}.{}", b64("{}"), b64("{}"), b64("{}")),
        ),
        (
            "header nested 5000 deep",
            format!(
                "{}.{}.{}",
                b64(format!("{}{}", "[".repeat(5000), "]".repeat(5000))),
                jws.c,
                jws.s
            ),
        ),
        (
            "header with a huge number",
            format!(
                "{}.{}.{}",
                b64(format!(
                    "{{\"alg\":\"{}\",\"typ\":\"at+jwt\",\"kid\":\"{}\",\"n\":1e999999}}",
                    jws.alg(),
                    jws.kid()
                )),
                jws.c,
                jws.s
            ),
        ),
        ("header not base64", format!("!!!.{}.{}", jws.c, jws.s)),
        (
            "header not UTF-8",
            format!("{}.{}.{}", b64([0xff, 0xfe, 0xfd]), jws.c, jws.s),
        ),
        ("claims not base64", format!("{}.***.{}", jws.h, jws.s)),
        ("five parts (JWE-shaped)", format!("{t}.{arr}.{arr}")),
        ("four parts", format!("{t}.")),
        ("leading dot", format!(".{t}")),
        ("the token twice", format!("{t}.{t}")),
        ("a space inside", format!("{} {}", &t[..10], &t[10..])),
        (
            "a real header over 8 KB of claims",
            format!("{}.{}.{}", jws.h, json_b64(&fat_claims), jws.s),
        ),
        ("null", "null".to_owned()),
        ("undefined", "undefined".to_owned()),
        ("[object Object]", "[object Object]".to_owned()),
        ("a refresh-token prefix and junk", "tsr_rt_x".to_owned()),
        ("a session-secret prefix and junk", "tsr_ss_x".to_owned()),
    ] {
        cases.junk(format!("junk: {name}"), token);
    }
}

// ------------------------------------------------------------------- suites

/// Every forgery against one server signing with `alg`.
async fn suite(alg: &str) {
    let started = std::time::Instant::now();
    let server = start_with_args(&[
        "--jwt-alg",
        alg,
        "--issuer",
        ISSUER,
        "--admin-key",
        ADMIN_KEY,
    ])
    .await;
    let alice = account(&server, "forge_a").await;
    let bob = account(&server, "forge_b").await;
    let jws = Jws::parse(&alice.access);
    let bob_jws = Jws::parse(&bob.access);
    assert_eq!(jws.alg(), alg, "header {:?}", jws.header);
    assert_eq!(jws.header["typ"], "at+jwt");
    assert_accepted(&server, &alice.access, &alice.name).await;
    let (jwks_text, jwks) = jwks_of(&server).await;

    let attacker = Attacker::generate(alg);
    let snitch = Snitch::start(
        json!({ "keys": [attacker.jwk("attacker-key"), attacker.jwk(jws.kid())] }).to_string(),
    )
    .await;

    let mut cases = Cases::default();
    alg_games(&jws, &mut cases);
    claim_games(&jws, &bob_jws, &bob.id, &bob.name, &mut cases);
    signature_games(&jws, &mut cases);
    header_games(&jws, &snitch, &mut cases);
    guessed_secrets(&jws, &mut cases);
    if alg == "HS256" {
        assert_eq!(
            jwks["keys"],
            json!([]),
            "HS256 publishes no key: {jwks_text}"
        );
    } else {
        key_confusion(&jws, &jwks_text, &jwks, &mut cases);
    }
    attacker_keys(&jws, &attacker, &snitch, &mut cases);
    jsonwebtoken_ed25519_attacker(&jws, &mut cases);
    junk(&jws, &mut cases);
    let count = cases.0.len();
    run_all(&server, alg, &[&alice.access, &bob.access], &cases).await;

    // Give a server that fetches in the background a moment to do so.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        snitch.hits(),
        0,
        "{alg}: the server contacted the URL of a jku/x5u/kid header"
    );

    swapped_kinds(&server, &alice, &bob).await;

    // The untouched tokens still work: the refusals above were the forgery's.
    assert_accepted(&server, &alice.access, &alice.name).await;
    assert_accepted(&server, &bob.access, &bob.name).await;
    eprintln!(
        "forged {alg}: {count} forged tokens refused on 3 routes in {:?}",
        started.elapsed()
    );
}

/// Refresh tokens, session secrets and access tokens in each other's place.
async fn swapped_kinds(server: &Server, alice: &Account, bob: &Account) {
    let got = me(server, &alice.refresh).await;
    assert_error(&got, 401, "unauthenticated");
    let refresh_as = |token: &str| json!({ "refresh_token": token });
    let res = server
        .post_json("/v1/tokens/refresh", &refresh_as(&alice.access))
        .await;
    assert_error(&status_json(res).await, 401, "invalid_token");

    let session = login(server, &alice.name).await;
    let got = me(server, &session.secret).await;
    assert_error(&got, 401, "unauthenticated");
    let res = server
        .post_json("/v1/tokens/refresh", &refresh_as(&session.secret))
        .await;
    assert_error(&status_json(res).await, 401, "invalid_token");

    let mut flipped = alice.refresh.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for forged in [
        flipped,
        format!("tsr_rt_{}", "A".repeat(43)),
        format!("{}x", alice.refresh),
        alice.refresh.replacen("tsr_rt_", "tsr_ss_", 1),
        alice.refresh.replacen("tsr_rt_", "", 1),
        format!("{}.{}", alice.refresh, bob.refresh),
    ] {
        let res = server
            .post_json("/v1/tokens/refresh", &refresh_as(&forged))
            .await;
        let got = status_json(res).await;
        assert_error(&got, 401, "invalid_token");
    }
    // The refresh token itself was never hurt by all this.
    let res = server
        .post_json("/v1/tokens/refresh", &refresh_as(&bob.refresh))
        .await;
    assert_eq!(res.status(), 200, "bob's untouched refresh token");
}

#[tokio::test]
async fn forged_tokens_are_refused_eddsa() {
    suite("EdDSA").await;
}

#[tokio::test]
async fn forged_tokens_are_refused_es256() {
    suite("ES256").await;
}

#[tokio::test]
async fn forged_tokens_are_refused_rs256() {
    suite("RS256").await;
}

#[tokio::test]
async fn forged_tokens_are_refused_hs256() {
    suite("HS256").await;
}

#[tokio::test]
async fn tokens_of_other_instances_and_issuers_are_refused() {
    let started = std::time::Instant::now();
    let first = start_with_args(&["--issuer", ISSUER, "--leeway", "0s"]).await;
    let mine = account(&first, "forge_mine").await;

    // Another instance of the same software, same issuer and algorithm, own
    // keys, a user of the same name.
    let twin = start_with_args(&["--issuer", ISSUER]).await;
    register(&twin, &mine.name).await;
    let (twin_token, twin_refresh) = token_login(&twin, &mine.name).await;
    // An instance with another issuer, sharing nothing.
    let other = start_with_args(&["--issuer", "http://other.example"]).await;
    let stranger = account(&other, "forge_other").await;

    // Instances sharing the first one's database, hence its signing keys and
    // sessions, but not its issuer or audience: only iss/aud can refuse.
    let shared = |extra: &[&str]| {
        let mut args = vec![
            "--database".to_owned(),
            format!("sqlite://{}", first.db_path().display()),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Server::start_with(
            BIN,
            Options {
                args,
                ..Options::default()
            },
        )
    };
    let same_key_other_iss = shared(&["--issuer", "http://other.example"]).await;
    let same_key_other_aud = shared(&[
        "--issuer",
        ISSUER,
        "--audience",
        "http://other-audience.example",
    ])
    .await;
    let same_key_same_iss = shared(&["--issuer", ISSUER, "--access-ttl", "3s"]).await;
    let first_jwks = jwks_of(&first).await.1;
    for s in [&same_key_other_iss, &same_key_other_aud, &same_key_same_iss] {
        assert_eq!(
            jwks_of(s).await.1,
            first_jwks,
            "a shared database shares keys"
        );
    }
    let (iss_token, _) = token_login(&same_key_other_iss, &mine.name).await;
    let (aud_token, _) = token_login(&same_key_other_aud, &mine.name).await;
    let (short_token, _) = token_login(&same_key_same_iss, &mine.name).await;
    assert_eq!(Jws::parse(&iss_token).kid(), Jws::parse(&mine.access).kid());
    assert_eq!(Jws::parse(&iss_token).claims["iss"], "http://other.example");
    assert_eq!(
        Jws::parse(&aud_token).claims["aud"],
        "http://other-audience.example"
    );

    // Control: a token of a key-sharing instance with the same issuer and
    // audience is good here, so the refusals below are about iss and aud.
    assert_accepted(&first, &short_token, &mine.name).await;
    assert_accepted(&twin, &twin_token, &mine.name).await;
    assert_accepted(&other, &stranger.access, &stranger.name).await;

    let mut cases = Cases::default();
    cases.add("a token of another tessera instance", twin_token.clone());
    cases.add(
        "a token of an instance with another issuer",
        stranger.access.clone(),
    );
    cases.add(
        "a token signed with this server's key for another issuer",
        iss_token,
    );
    cases.add(
        "a token signed with this server's key for another audience",
        aud_token,
    );
    let twin_jws = Jws::parse(&twin_token);
    let mine_jws = Jws::parse(&mine.access);
    cases.add(
        "the twin's claims under this server's header and signature",
        format!("{}.{}.{}", mine_jws.h, twin_jws.c, mine_jws.s),
    );
    cases.add(
        "the twin's token relabelled with this server's kid",
        format!(
            "{}.{}.{}",
            json_b64(&twin_jws.header_with(&[("kid", Some(json!(mine_jws.kid())))])),
            twin_jws.c,
            twin_jws.s
        ),
    );
    cases.junk("the twin's refresh token", twin_refresh.clone());
    // No admin key here: introspection is off, so check /v1/me and
    // /v1/auth/verify only.
    let mut failures = Vec::new();
    for case in &cases.0 {
        for path in ["/v1/me", "/v1/auth/verify"] {
            let res = first.get(path, bearer(&case.token)).await;
            let status = res.status().as_u16();
            if status != 401 {
                let text = res.text().await.unwrap_or_default();
                failures.push(format!(
                    "{} — GET {path} -> {status} {text}\n  token: {}",
                    case.name,
                    shorten(&case.token)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "tokens of other instances accepted:\n{}\nserver log:\n{}",
        failures.join("\n"),
        first.log()
    );
    let res = first
        .post_json(
            "/v1/tokens/refresh",
            &json!({ "refresh_token": twin_refresh }),
        )
        .await;
    assert_error(&status_json(res).await, 401, "invalid_token");

    // The short-lived token, already verified once (and cached), is refused
    // once its exp has passed (this server has no leeway).
    let exp = Jws::parse(&short_token).claims["exp"].as_i64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let exp_ms = u128::try_from(exp).unwrap() * 1000;
    let wait_ms = exp_ms.saturating_sub(now_ms) + 1100;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap())).await;
    let got = me(&first, &short_token).await;
    assert_error(&got, 401, "unauthenticated");

    assert_accepted(&first, &mine.access, &mine.name).await;
    eprintln!("forged other instances: {:?}", started.elapsed());
}
