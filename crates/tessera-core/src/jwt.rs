//! Access tokens: JWS compact JWTs following RFC 9068, signed and verified
//! with the `jsonwebtoken` crate (aws-lc-rs backend); keys generated with
//! aws-lc-rs (Ed25519, P-256) and the `rsa` crate (RSA 2048).
//!
//! Verification is strict and explicit, because the JOSE crate's defaults are
//! not ours: only the configured algorithm, only known `kid`s, `typ` must be
//! `at+jwt`, `crit` is refused, `jku`/`x5u`/`jwk`/`x5c` are never looked at,
//! and `iss`, `aud`, `exp` and `nbf` are checked here against the `now` and
//! leeway the caller passes (the crate's own clock and 60 s default leeway are
//! switched off). The signature is checked before any claim is believed.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::{Refusal, Rng};

/// Longest token accepted for verification; anything longer is junk.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The signing algorithms tessera offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// Ed25519 (the default).
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    Rs256,
    /// HMAC-SHA256 with a server secret (nothing to publish in the JWKS).
    Hs256,
}

impl Alg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::Hs256 => "HS256",
        }
    }

    /// Parses a JOSE name (exact spelling).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EdDSA" => Some(Self::EdDsa),
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            "HS256" => Some(Self::Hs256),
            _ => None,
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
            Self::Hs256 => Algorithm::HS256,
        }
    }

    /// Whether the algorithm has a public key to publish.
    pub fn is_asymmetric(self) -> bool {
        self != Self::Hs256
    }
}

/// Key generation or loading failed.
#[derive(Debug, thiserror::Error)]
#[error("signing key error: {0}")]
pub struct KeyError(String);

impl KeyError {
    /// A key error described by a sentence.
    pub fn from_message(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A signing key: private material (PKCS#8 for Ed25519 and P-256, PKCS#1 for
/// RSA, raw bytes for HS256) and, for asymmetric keys, the public JWK.
#[derive(Clone)]
pub struct KeyMaterial {
    /// Key id: the RFC 7638 thumbprint of the public key, or random for HS256.
    pub kid: String,
    /// The algorithm the key signs with.
    pub alg: Alg,
    /// Private material; never logged, stored only sealed.
    pub private: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn key_err(e: impl std::fmt::Display) -> KeyError {
    KeyError(e.to_string())
}

impl KeyMaterial {
    /// A new key for `alg`.
    pub fn generate(alg: Alg, rng: &mut dyn Rng) -> Result<Self, KeyError> {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
        let private = match alg {
            Alg::Hs256 => {
                let mut bytes = vec![0u8; 32];
                rng.fill_bytes(&mut bytes);
                let kid = crate::ids::new_id("hs", rng);
                return Ok(Self {
                    kid,
                    alg,
                    private: bytes,
                });
            }
            // aws-lc draws these from the operating system's CSPRNG itself.
            Alg::EdDsa => Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
                .map_err(key_err)?
                .as_ref()
                .to_vec(),
            Alg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(key_err)?
                    .as_ref()
                    .to_vec()
            }
            Alg::Rs256 => {
                use rsa::pkcs1::EncodeRsaPrivateKey as _;
                let mut rng = RngAdapter(rng);
                let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(key_err)?;
                key.to_pkcs1_der().map_err(key_err)?.as_bytes().to_vec()
            }
        };
        let mut key = Self {
            kid: String::new(),
            alg,
            private,
        };
        let jwk = key.bare_public_jwk()?;
        key.kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(key_err)?;
        Ok(key)
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Alg::Hs256 => EncodingKey::from_secret(&self.private),
            Alg::EdDsa => EncodingKey::from_ed_der(&self.private),
            Alg::Es256 => EncodingKey::from_ec_der(&self.private),
            Alg::Rs256 => EncodingKey::from_rsa_der(&self.private),
        }
    }

    fn bare_public_jwk(&self) -> Result<Jwk, KeyError> {
        Jwk::from_encoding_key(&self.encoding_key(), self.alg.jose()).map_err(key_err)
    }

    /// The public JWK (`kid`, `alg`, `"use": "sig"`), or `None` for HS256,
    /// whose key is secret.
    pub fn public_jwk(&self) -> Result<Option<Jwk>, KeyError> {
        if !self.alg.is_asymmetric() {
            return Ok(None);
        }
        let mut jwk = self.bare_public_jwk()?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match self.alg {
            Alg::EdDsa => KeyAlgorithm::EdDSA,
            Alg::Es256 => KeyAlgorithm::ES256,
            Alg::Rs256 => KeyAlgorithm::RS256,
            Alg::Hs256 => KeyAlgorithm::HS256,
        });
        Ok(Some(jwk))
    }

    fn decoding_key(&self) -> Result<DecodingKey, KeyError> {
        match self.public_jwk()? {
            Some(jwk) => DecodingKey::from_jwk(&jwk).map_err(key_err),
            None => Ok(DecodingKey::from_secret(&self.private)),
        }
    }
}

/// rsa 0.9 wants a sized `CryptoRngCore`; this passes our `dyn` one through.
struct RngAdapter<'a>(&'a mut dyn Rng);

impl rand_core::RngCore for RngAdapter<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl rand_core::CryptoRng for RngAdapter<'_> {}

/// What every access token says, RFC 9068 plus `sid` and `username`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// User id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Public id of the session (refresh family) the token belongs to.
    pub sid: String,
    /// The username at issue time.
    pub username: String,
    /// RFC 9068 requires a client id; tessera is its own client.
    pub client_id: String,
}

/// The checks every token must pass.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// The one accepted algorithm.
    pub alg: Alg,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Clock-skew allowance for `exp` and `nbf`.
    pub leeway: Duration,
}

impl TokenRules {
    /// Claims for a new access token of `session_id`: valid for at least
    /// `access_ttl` (its `exp` is rounded up to the second), capped at the
    /// session's end.
    #[allow(clippy::too_many_arguments)]
    pub fn claims(
        &self,
        user_id: &str,
        username: &str,
        session_id: &str,
        session_expires_at: OffsetDateTime,
        now: OffsetDateTime,
        rng: &mut dyn Rng,
    ) -> AccessClaims {
        // JWT times are whole seconds. Rounding `exp` down would cut up to a
        // second off the lifetime (all of it, for a 1 s token); round it up,
        // but never past the session's end.
        let end = now + self.access_ttl;
        let exp = (end.unix_timestamp() + i64::from(end.nanosecond() > 0))
            .min(session_expires_at.unix_timestamp());
        AccessClaims {
            iss: self.issuer.clone(),
            sub: user_id.to_owned(),
            aud: self.audience.clone(),
            iat: now.unix_timestamp(),
            nbf: now.unix_timestamp(),
            exp,
            jti: crate::ids::new_id("at", rng),
            sid: session_id.to_owned(),
            username: username.to_owned(),
            client_id: "tessera".to_owned(),
        }
    }
}

struct RingKey {
    alg: Alg,
    decoding: DecodingKey,
}

/// The keys a server signs and verifies with: one current signing key and
/// every key still published (the current one and recently retired ones).
pub struct KeyRing {
    signer: Option<Signer>,
    verify: HashMap<String, RingKey>,
    jwks: Vec<Jwk>,
}

struct Signer {
    kid: String,
    alg: Alg,
    encoding: EncodingKey,
}

impl KeyRing {
    /// A ring from the current key and the other keys still published.
    pub fn new(current: &KeyMaterial, published: &[KeyMaterial]) -> Result<Self, KeyError> {
        let mut verify = HashMap::new();
        let mut jwks = Vec::new();
        for key in std::iter::once(current).chain(published) {
            if verify.contains_key(&key.kid) {
                continue;
            }
            verify.insert(
                key.kid.clone(),
                RingKey {
                    alg: key.alg,
                    decoding: key.decoding_key()?,
                },
            );
            if let Some(jwk) = key.public_jwk()? {
                jwks.push(jwk);
            }
        }
        Ok(Self {
            signer: Some(Signer {
                kid: current.kid.clone(),
                alg: current.alg,
                encoding: current.encoding_key(),
            }),
            verify,
            jwks,
        })
    }

    /// A verify-only ring from a published JWK set (`{"keys": [...]}`):
    /// what any other service holds. Keys without a `kid` or with an
    /// algorithm tessera does not offer are skipped.
    pub fn from_jwks(set: &serde_json::Value) -> Result<Self, KeyError> {
        let keys = set
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| KeyError("not a JWK set: no \"keys\" array".into()))?;
        let mut verify = HashMap::new();
        let mut jwks = Vec::new();
        for value in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
                continue;
            };
            let alg = value
                .get("alg")
                .and_then(|a| a.as_str())
                .and_then(Alg::parse);
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), alg) else {
                continue;
            };
            if !alg.is_asymmetric() {
                continue;
            }
            let decoding = DecodingKey::from_jwk(&jwk).map_err(key_err)?;
            verify.insert(kid, RingKey { alg, decoding });
            jwks.push(jwk);
        }
        Ok(Self {
            signer: None,
            verify,
            jwks,
        })
    }

    /// A verify-only ring holding one HS256 secret under `kid`.
    pub fn from_hmac_secret(kid: &str, secret: &[u8]) -> Self {
        let mut verify = HashMap::new();
        verify.insert(
            kid.to_owned(),
            RingKey {
                alg: Alg::Hs256,
                decoding: DecodingKey::from_secret(secret),
            },
        );
        Self {
            signer: None,
            verify,
            jwks: Vec::new(),
        }
    }

    /// The kid new tokens are signed with (`None` for a verify-only ring).
    pub fn current_kid(&self) -> Option<&str> {
        self.signer.as_ref().map(|s| s.kid.as_str())
    }

    /// The algorithm of the key `kid`, if the ring has it.
    pub fn alg_of(&self, kid: &str) -> Option<Alg> {
        self.verify.get(kid).map(|k| k.alg)
    }

    /// Whether a kid is in the ring.
    pub fn knows(&self, kid: &str) -> bool {
        self.verify.contains_key(kid)
    }

    /// The public keys, as a JWK set (`{"keys": [...]}`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.jwks })
    }

    /// Signs `claims` with the current key, header `typ: at+jwt` and `kid`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| KeyError("this key ring can only verify".into()))?;
        let mut header = Header::new(signer.alg.jose());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &signer.encoding).map_err(key_err)
    }

    /// Verifies `token` under `rules` at `now`. Returns the claims and the kid.
    pub fn verify(
        &self,
        rules: &TokenRules,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Verified, Refusal> {
        let header = self.check_header(rules, token)?;
        let key = self.verify.get(&header.kid).ok_or(Refusal::UnknownKey)?;
        if key.alg != rules.alg {
            return Err(Refusal::WrongAlgorithm);
        }
        let mut validation = Validation::new(rules.alg.jose());
        // Time, audience and issuer are checked below with our clock and
        // typed reasons; the crate only checks the signature here.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims = HashSet::new();
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidRsaKey(_) => Refusal::BadSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        Refusal::WrongAlgorithm
                    }
                    _ => Refusal::Malformed,
                }
            })?;
        let claims = data.claims;
        check_claims(rules, &claims, now)?;
        Ok(Verified {
            claims,
            kid: header.kid,
        })
    }

    fn check_header(&self, rules: &TokenRules, token: &str) -> Result<CheckedHeader, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| Refusal::Malformed)?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
        // Compare the exact spelling: "none", "None", "NONE", "HS256" for an
        // EdDSA server, all refused before any key is chosen.
        if header.get("alg").and_then(|v| v.as_str()) != Some(rules.alg.as_str()) {
            return Err(Refusal::WrongAlgorithm);
        }
        let typ = header.get("typ").and_then(|v| v.as_str()).unwrap_or("");
        if !(typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")) {
            return Err(Refusal::WrongType);
        }
        // RFC 7515 §4.1.11: extensions we do not understand must be refused.
        if header.contains_key("crit") {
            return Err(Refusal::Malformed);
        }
        let kid = header
            .get("kid")
            .and_then(|v| v.as_str())
            .ok_or(Refusal::UnknownKey)?;
        if !self.knows(kid) {
            return Err(Refusal::UnknownKey);
        }
        Ok(CheckedHeader {
            kid: kid.to_owned(),
        })
    }
}

struct CheckedHeader {
    kid: String,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its claims.
    pub claims: AccessClaims,
    /// The key that signed it.
    pub kid: String,
}

/// The time-independent and time-dependent claim checks, with `leeway`.
pub fn check_claims(
    rules: &TokenRules,
    claims: &AccessClaims,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    if claims.iss != rules.issuer {
        return Err(Refusal::WrongIssuer);
    }
    if claims.aud != rules.audience {
        return Err(Refusal::WrongAudience);
    }
    check_times(rules, claims, now)
}

/// `exp` and `nbf` against `now`, with the rules' leeway.
pub fn check_times(
    rules: &TokenRules,
    claims: &AccessClaims,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    let now = now.unix_timestamp();
    let leeway = rules.leeway.whole_seconds();
    if now >= claims.exp.saturating_add(leeway) {
        return Err(Refusal::Expired);
    }
    if claims.nbf > now.saturating_add(leeway) {
        return Err(Refusal::NotYetValid);
    }
    Ok(())
}

/// Reads a token's header and claims without verifying anything, for
/// `tessera token decode` (which then verifies and says why not).
pub fn peek(token: &str) -> Option<(serde_json::Value, serde_json::Value)> {
    let mut parts = token.trim().split('.');
    let h = parts.next()?;
    let c = parts.next()?;
    let decode = |s: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?).ok()
    };
    Some((decode(h)?, decode(c)?))
}

#[cfg(test)]
mod tests;
