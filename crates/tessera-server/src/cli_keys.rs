//! `tessera keys …` and `tessera token decode`: operator commands for the
//! signing keys, and a JWT reader that says what a token claims and whether
//! to believe it.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use tessera_core::Refusal;
use tessera_core::jwt::{Alg, KeyMaterial, KeyRing, TokenRules, peek};
use time::{Duration, OffsetDateTime};

use crate::accounts::Accounts;
use crate::app::Database;
use crate::handlers::{now, rfc3339};
use crate::keys::{Keys, decrypt_context, does_not_decrypt, is_published, master_key};
use crate::settings::{Settings, SettingsArgs};
use tessera_store::OpenMode;

/// `tessera keys rotate`: a new current key; the old one stays published
/// until the last token it signed has expired.
pub async fn rotate(args: SettingsArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    // The database must exist already: rotating the keys of a database made
    // here by mistake would only start a second installation.
    let db = Database::open(&settings, OpenMode::Existing).await?;
    let now = now();
    // Opening checks the master key against the database before anything is
    // written; a wrong one is a setting error (exit 2), as for `serve`.
    let keys = Keys::open(db.keys.clone(), &settings, now)
        .await
        .map_err(crate::keys::KeyLoadError::into_anyhow)?;
    let accounts = Accounts::for_settings(db.with_redis(&settings).await?, &settings, 1)?;
    let key = accounts
        .rotate_keys(&keys, &crate::cli::command_line(), now)
        .await
        .with_context(|| format!("storing the new key in {}", db.shown))?;
    let keep = settings.key_publication();
    println!(
        "new {} key {} is current; the previous one stays published until {} (access_ttl + leeway + key_refresh). \
         Running servers pick it up within --key-refresh ({}).",
        key.alg,
        key.kid,
        rfc3339(now + keep),
        crate::settings::format_duration(settings.key_refresh),
    );
    Ok(())
}

/// `tessera keys list`.
/// The keys on standard output, and on standard error which database they
/// are in.
pub async fn list(args: SettingsArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    let db = Database::open(&settings, OpenMode::ReadOnly).await?;
    let keep = settings.key_publication();
    let now = now();
    let keys = db.keys.keys().await.context("reading keys")?;
    let count = keys.len();
    println!("{:<44}  {:<6}  {:<24}  STATUS", "KID", "ALG", "CREATED");
    for k in keys {
        let status = match k.superseded_at {
            None if k.alg == settings.jwt_alg.as_str() => "current (signing)".to_owned(),
            None => "current for another --jwt-alg".to_owned(),
            Some(at) if is_published(&k, now, keep) => {
                format!("published until {}", rfc3339(at + keep))
            }
            Some(_) => "retired".to_owned(),
        };
        println!(
            "{:<44}  {:<6}  {:<24}  {status}",
            k.kid,
            k.alg,
            rfc3339(k.created_at)
        );
    }
    match count {
        0 => eprintln!(
            "no signing keys in {}: `tessera serve` makes the first on its first start",
            db.shown
        ),
        1 => eprintln!("1 signing key in {}", db.shown),
        n => eprintln!("{n} signing keys in {}", db.shown),
    }
    Ok(())
}

/// Where `token decode` gets its keys.
pub enum KeySource {
    /// The local database's keys (needs the master key).
    Database,
    /// A JWK set from a file or an http:// or https:// URL.
    Jwks(String),
    /// An HS256 secret, as given.
    Secret(String),
}

/// "3m 12s", "2h 5m", "4d 3h": a duration for humans.
pub fn human(d: Duration) -> String {
    let s = d.whole_seconds().abs();
    let (d_, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d_, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d_}d {h}h"),
    }
}

fn when(unix: i64, now: OffsetDateTime) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) if t >= now => format!("{} (in {})", rfc3339(t), human(t - now)),
        Ok(t) => format!("{} ({} ago)", rfc3339(t), human(now - t)),
        Err(_) => "out of range".to_owned(),
    }
}

/// Why a token is not to be believed, in a sentence.
fn explain(r: Refusal, exp: Option<i64>, now: OffsetDateTime) -> String {
    match r {
        Refusal::Expired => match exp.and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok()) {
            Some(t) => format!("expired {} ago", human(now - t)),
            None => "expired".to_owned(),
        },
        Refusal::BadSignature => {
            "bad signature: the token was altered or signed by another key".to_owned()
        }
        Refusal::UnknownKey => "unknown kid: no key with this id among the keys given".to_owned(),
        Refusal::WrongAlgorithm => "wrong algorithm: the header's alg is not the key's".to_owned(),
        Refusal::WrongType => "wrong type: typ is not at+jwt".to_owned(),
        Refusal::WrongIssuer => "wrong issuer (iss)".to_owned(),
        Refusal::WrongAudience => "wrong audience (aud)".to_owned(),
        Refusal::NotYetValid => "not yet valid (nbf is in the future)".to_owned(),
        other => format!("refused: {other}"),
    }
}

async fn load_jwks(source: &str) -> anyhow::Result<serde_json::Value> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        reqwest::get(source)
            .await
            .with_context(|| format!("fetching {source}"))?
            .error_for_status()?
            .text()
            .await?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    };
    serde_json::from_str(&text).context("the JWK set is not JSON")
}

/// The keys of the database, which is only read: it must exist, and
/// neither it nor a key file is created.
async fn database_ring(settings: &Settings) -> anyhow::Result<KeyRing> {
    let db = Database::open(settings, OpenMode::ReadOnly).await?;
    let stored = db.keys.keys().await.context("reading keys")?;
    if stored.is_empty() {
        // Said before the master key is looked for: without keys, a missing
        // key file is not the problem.
        bail!(
            "there are no signing keys in {}: is it the database the server uses? \
             (`tessera serve` makes the first key on its first start)",
            db.shown
        );
    }
    let master = master_key(settings)?;
    let context = decrypt_context(settings);
    let mut keys = Vec::new();
    for k in stored {
        let Some(alg) = Alg::parse(&k.alg) else {
            continue;
        };
        let private = master
            .open(&k.kid, &k.sealed_private)
            .map_err(|_| does_not_decrypt(&format!("signing key {}", k.kid), &context))?;
        keys.push(KeyMaterial {
            kid: k.kid,
            alg,
            private,
        });
    }
    let Some((first, rest)) = keys.split_first() else {
        bail!(
            "none of the signing keys in {} is of an algorithm this tessera knows",
            db.shown
        );
    };
    Ok(KeyRing::new(first, rest)?)
}

/// What a tessera credential that is not a JWT is, for `token decode`.
fn opaque_kind(token: &str) -> Option<&'static str> {
    if token.starts_with(tessera_core::refresh::REFRESH_TOKEN_PREFIX) {
        Some(
            "a tessera refresh token (tsr_rt_…), not a JWT: it is opaque by design and carries \
             no claims to decode. Only the server can say whether it is still valid: \
             POST /v1/tokens/introspect (with the admin key) tells.",
        )
    } else if token.starts_with(tessera_core::secret::SESSION_SECRET_PREFIX) {
        Some(
            "a tessera session secret (tsr_ss_…, the session cookie's value), not a JWT: it is \
             opaque by design and carries no claims to decode. Only the server can say whose \
             session it is: GET /v1/me with it as the session cookie tells.",
        )
    } else {
        None
    }
}

/// `tessera token decode`: prints header and claims, then the verdict.
/// Returns whether the token verified.
pub async fn decode(
    token: Option<String>,
    source: KeySource,
    args: SettingsArgs,
) -> anyhow::Result<bool> {
    let token = match token {
        Some(t) if t != "-" => t,
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the token from stdin")?;
            s
        }
    };
    let token = token.trim();
    let settings = Settings::resolve(args)?;
    let now = now();
    let Some((header, claims)) = peek(token) else {
        match opaque_kind(token) {
            Some(kind) => println!("this is {kind}"),
            None if token.is_empty() => println!("no token: give one, or pipe it in"),
            None => println!("not a JWT: expected three base64url parts separated by dots"),
        }
        return Ok(false);
    };
    println!("header:\n{}", serde_json::to_string_pretty(&header)?);
    println!("claims:\n{}", serde_json::to_string_pretty(&claims)?);
    for name in ["iat", "nbf", "exp"] {
        if let Some(v) = claims.get(name).and_then(|v| v.as_i64()) {
            println!("  {name}: {}", when(v, now));
        }
    }
    let exp = claims.get("exp").and_then(|v| v.as_i64());
    // Measured from the same `now` as the `exp` line above, so both agree.
    let left = exp
        .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok())
        .filter(|t| *t > now);
    if let Some(t) = left {
        println!("time left: {}", human(t - now));
    }
    let kid = header.get("kid").and_then(|v| v.as_str()).unwrap_or("");
    let ring = match source {
        KeySource::Database => {
            let ring = database_ring(&settings).await?;
            println!("keys: the database {}", settings.database_shown());
            ring
        }
        KeySource::Jwks(src) => {
            let ring = KeyRing::from_jwks(&load_jwks(&src).await?)?;
            println!("keys: the JWK set {src}");
            ring
        }
        KeySource::Secret(secret) => {
            println!("keys: the HS256 secret given with --secret");
            KeyRing::from_hmac_secret(kid, secret.as_bytes())
        }
    };
    // The algorithm comes from the key, never from the token's header.
    let alg = ring.alg_of(kid).unwrap_or(settings.jwt_alg);
    let rules = TokenRules {
        issuer: settings.issuer.clone(),
        audience: settings.audience.clone(),
        alg,
        access_ttl: settings.access_ttl,
        leeway: settings.leeway,
    };
    match ring.verify(&rules, token, now) {
        Ok(v) => {
            println!(
                "verdict: verified (signature by {} {}, iss and aud as expected, not expired)",
                alg.as_str(),
                v.kid
            );
            Ok(true)
        }
        Err(r) => {
            println!("verdict: NOT verified: {}", explain(r, exp, now));
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::seconds(42)), "42s");
        assert_eq!(human(Duration::seconds(192)), "3m 12s");
        assert_eq!(human(Duration::minutes(125)), "2h 5m");
        assert_eq!(human(Duration::hours(99)), "4d 3h");
        assert_eq!(human(Duration::seconds(-192)), "3m 12s");
    }
}
