//! Settings: one typed struct, resolved from flags, the environment and a TOML
//! file, in that order of precedence.
//!
//! clap reads flags and environment variables, under the headings of the
//! help, into [`SettingsArgs`] (every value optional and kept as text);
//! [`FileSettings`] reads the TOML file and rejects unknown keys;
//! [`Settings::resolve`] merges them, applies the defaults of `docs/api.md`
//! and validates everything in one place, so a bad value stops the start
//! with one line naming the setting, whichever source it came from (and the
//! file's line, when it came from the file). [`unknown_variables`] finds
//! misspelt `TESSERA_*` variables, which would otherwise be ignored.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::Duration;

/// A setting that cannot be used. `main` prints it on one line and exits with 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name} (--{flag} / {env}): {problem}")]
pub struct SettingError {
    /// The setting's name in the config file.
    pub name: &'static str,
    /// The flag, without dashes.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Every setting as flags and environment variables give it, each value
/// optional and kept as text, for [`Settings::resolve`]. Every command takes
/// these flags; its help shows those it uses (`cli::command`).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct SettingsArgs {
    /// TOML file with settings; flags and environment variables win over it.
    #[arg(long, env = "TESSERA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on; port 0 picks a free port and prints it.
    /// [default: 127.0.0.1:7480]
    #[arg(
        long,
        help_heading = "Server",
        env = "TESSERA_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: Option<String>,
    /// Address and port of a second listener that serves only the Prometheus
    /// metrics, at /metrics; port 0 picks a free port and prints it. Metrics
    /// are neither recorded nor served when unset, and the main listener
    /// never serves them. [default: unset]
    #[arg(
        long,
        help_heading = "Server",
        env = "TESSERA_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<String>,
    /// Longest a client may take to send a request's headers (and longest a
    /// kept-alive connection may stay idle); then the connection is closed.
    /// [default: 10s]
    #[arg(
        long,
        help_heading = "Server",
        env = "TESSERA_HEADER_READ_TIMEOUT",
        value_name = "DUR"
    )]
    pub header_read_timeout: Option<String>,
    /// Longest a client may take to send a request's body, once its headers
    /// are in; then it gets 408 request_timeout and the connection is closed.
    /// [default: 10s]
    #[arg(
        long,
        help_heading = "Server",
        env = "TESSERA_BODY_READ_TIMEOUT",
        value_name = "DUR"
    )]
    pub body_read_timeout: Option<String>,
    /// Most client connections open at once (fewer if the open-file limit
    /// does not allow that many). A new connection beyond it closes the one
    /// that has waited longest for its client. [default: 10000]
    #[arg(
        long,
        help_heading = "Server",
        env = "TESSERA_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub max_connections: Option<String>,
    /// Cookies without Secure and without the __Host-/__Secure- prefixes, for
    /// plain-HTTP development on this machine only: refused with a --listen
    /// address other machines can reach.
    #[arg(long, help_heading = "Server", env = "TESSERA_INSECURE_DEV_COOKIES", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub insecure_dev_cookies: Option<bool>,
    /// Let --insecure-dev-cookies listen on an address other machines can
    /// reach (a test network, a container), where those cookies travel in
    /// clear text. Never in production.
    #[arg(long, help_heading = "Server", env = "TESSERA_ALLOW_INSECURE_COOKIES_ON_NETWORK", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub allow_insecure_cookies_on_network: Option<bool>,
    /// Refuse new registrations with 403 registration_closed.
    #[arg(long, help_heading = "Server", env = "TESSERA_DISABLE_REGISTRATION", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub disable_registration: Option<bool>,
    /// Behind a reverse proxy: take the client address (for the login
    /// throttle and the device list) from the last X-Forwarded-For entry,
    /// the one the proxy added. Only with a proxy that always sets it.
    #[arg(long, help_heading = "Server", env = "TESSERA_TRUST_FORWARDED_FOR", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub trust_forwarded_for: Option<bool>,
    /// Origins besides this server's own (its Host) whose pages may log in,
    /// register or send cookie-authenticated writes, comma-separated
    /// (https://app.example.com). Other origins, and requests a browser marks
    /// Sec-Fetch-Site: cross-site, get 403 cross_site_request.
    #[arg(
        long,
        help_heading = "Server",
        env = "TESSERA_TRUSTED_ORIGINS",
        value_name = "ORIGINS"
    )]
    pub trusted_origins: Option<String>,
    /// Do not send Strict-Transport-Security (sent by default whenever
    /// cookies are Secure, that is without --insecure-dev-cookies).
    #[arg(long, help_heading = "Server", env = "TESSERA_DISABLE_HSTS", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub disable_hsts: Option<bool>,
    /// Bearer key for admin routes such as introspection; admin routes are off when unset.
    #[arg(
        long,
        help_heading = "Server",
        env = "TESSERA_ADMIN_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// Database for users and keys, and by default sessions and refresh
    /// tokens: sqlite://PATH or postgres://... [default: sqlite://tessera.db]
    #[arg(
        long,
        help_heading = "Storage",
        env = "TESSERA_DATABASE_URL",
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// PostgreSQL only: the schema tessera's tables live in (serve creates it
    /// if missing), so one database can hold several installations.
    /// [default: the connection's default schema]
    #[arg(
        long,
        help_heading = "Storage",
        env = "TESSERA_DATABASE_SCHEMA",
        value_name = "NAME"
    )]
    pub database_schema: Option<String>,
    /// PostgreSQL only: most connections this instance opens. [default: 10]
    #[arg(
        long,
        help_heading = "Storage",
        env = "TESSERA_DATABASE_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub database_max_connections: Option<String>,
    /// When set, sessions, refresh tokens and login-failure counters live in
    /// Redis (users and keys stay in the database): redis://... or rediss://...
    #[arg(
        long,
        help_heading = "Storage",
        env = "TESSERA_REDIS_URL",
        value_name = "URL"
    )]
    pub redis: Option<String>,
    /// Prefix of every Redis key, so several installations can share one
    /// Redis. [default: tessera]
    #[arg(
        long,
        help_heading = "Storage",
        env = "TESSERA_REDIS_PREFIX",
        value_name = "PREFIX"
    )]
    pub redis_prefix: Option<String>,
    /// Key-encryption key for signing keys in the database: 64 hex characters.
    /// [default with SQLite: a 0600 file tessera.key beside the database]
    #[arg(
        long,
        help_heading = "Storage",
        env = "TESSERA_MASTER_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub master_key: Option<String>,
    /// `iss` of access tokens. [default: http://127.0.0.1:7480]
    #[arg(
        long,
        help_heading = "Tokens",
        env = "TESSERA_ISSUER",
        value_name = "URL"
    )]
    pub issuer: Option<String>,
    /// `aud` of access tokens. [default: the issuer]
    #[arg(
        long,
        help_heading = "Tokens",
        env = "TESSERA_AUDIENCE",
        value_name = "AUD"
    )]
    pub audience: Option<String>,
    /// Signing algorithm of access tokens: EdDSA, ES256, RS256 or HS256. [default: EdDSA]
    #[arg(
        long,
        help_heading = "Tokens",
        env = "TESSERA_JWT_ALG",
        value_name = "ALG"
    )]
    pub jwt_alg: Option<String>,
    /// Clock-skew allowance when checking exp and nbf, at most 60s. [default: 5s]
    #[arg(
        long,
        help_heading = "Tokens",
        env = "TESSERA_LEEWAY",
        value_name = "DUR"
    )]
    pub leeway: Option<String>,
    /// Lifetime of access tokens, e.g. 15m. [default: 15m]
    #[arg(
        long,
        help_heading = "Tokens",
        env = "TESSERA_ACCESS_TTL",
        value_name = "DUR"
    )]
    pub access_ttl: Option<String>,
    /// How often a running server re-reads the signing keys, so that
    /// `tessera keys rotate` takes effect without a restart. [default: 10s]
    #[arg(
        long,
        help_heading = "Tokens",
        env = "TESSERA_KEY_REFRESH",
        value_name = "DUR"
    )]
    pub key_refresh: Option<String>,
    /// How long a session or user read from the store may be served from
    /// memory at most; a change made through tessera reaches every
    /// instance's cache at once, this bounds any other. `0s` turns the cache
    /// off. [default: 5s]
    #[arg(
        long,
        help_heading = "Sessions and refresh tokens",
        env = "TESSERA_AUTH_CACHE_TTL",
        value_name = "DUR"
    )]
    pub auth_cache_ttl: Option<String>,
    /// Lifetime of refresh tokens, e.g. 14d. [default: 14d]
    #[arg(
        long,
        help_heading = "Sessions and refresh tokens",
        env = "TESSERA_REFRESH_TTL",
        value_name = "DUR"
    )]
    pub refresh_ttl: Option<String>,
    /// Window in which a spent refresh token returns the same successor
    /// instead of counting as theft. [default: 0s]
    #[arg(
        long,
        help_heading = "Sessions and refresh tokens",
        env = "TESSERA_REFRESH_GRACE",
        value_name = "DUR"
    )]
    pub refresh_grace: Option<String>,
    /// Idle timeout of cookie sessions, e.g. 30m. [default: 30m]
    #[arg(
        long,
        help_heading = "Sessions and refresh tokens",
        env = "TESSERA_SESSION_IDLE",
        value_name = "DUR"
    )]
    pub session_idle: Option<String>,
    /// Absolute lifetime of cookie sessions, e.g. 24h. [default: 24h]
    #[arg(
        long,
        help_heading = "Sessions and refresh tokens",
        env = "TESSERA_SESSION_TTL",
        value_name = "DUR"
    )]
    pub session_ttl: Option<String>,
}

impl SettingsArgs {
    /// The settings given here (by flag or environment), by name.
    fn given(&self) -> Vec<&'static str> {
        let s = self;
        [
            ("listen", s.listen.is_some()),
            ("metrics_listen", s.metrics_listen.is_some()),
            ("header_read_timeout", s.header_read_timeout.is_some()),
            ("body_read_timeout", s.body_read_timeout.is_some()),
            ("max_connections", s.max_connections.is_some()),
            ("database", s.database.is_some()),
            ("database_schema", s.database_schema.is_some()),
            (
                "database_max_connections",
                s.database_max_connections.is_some(),
            ),
            ("redis", s.redis.is_some()),
            ("redis_prefix", s.redis_prefix.is_some()),
            ("issuer", s.issuer.is_some()),
            ("audience", s.audience.is_some()),
            ("jwt_alg", s.jwt_alg.is_some()),
            ("refresh_grace", s.refresh_grace.is_some()),
            ("leeway", s.leeway.is_some()),
            ("master_key", s.master_key.is_some()),
            ("admin_key", s.admin_key.is_some()),
            ("insecure_dev_cookies", s.insecure_dev_cookies.is_some()),
            (
                "allow_insecure_cookies_on_network",
                s.allow_insecure_cookies_on_network.is_some(),
            ),
            ("disable_registration", s.disable_registration.is_some()),
            ("trust_forwarded_for", s.trust_forwarded_for.is_some()),
            ("trusted_origins", s.trusted_origins.is_some()),
            ("disable_hsts", s.disable_hsts.is_some()),
            ("access_ttl", s.access_ttl.is_some()),
            ("refresh_ttl", s.refresh_ttl.is_some()),
            ("session_idle", s.session_idle.is_some()),
            ("session_ttl", s.session_ttl.is_some()),
            ("key_refresh", s.key_refresh.is_some()),
            ("auth_cache_ttl", s.auth_cache_ttl.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// The TOML config file. Keys are the flag names with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    listen: Option<String>,
    metrics_listen: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    max_connections: Option<NumberOrText>,
    database: Option<String>,
    database_schema: Option<String>,
    database_max_connections: Option<NumberOrText>,
    redis: Option<String>,
    redis_prefix: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    jwt_alg: Option<String>,
    refresh_grace: Option<String>,
    leeway: Option<String>,
    master_key: Option<String>,
    admin_key: Option<String>,
    insecure_dev_cookies: Option<bool>,
    allow_insecure_cookies_on_network: Option<bool>,
    disable_registration: Option<bool>,
    trust_forwarded_for: Option<bool>,
    trusted_origins: Option<Vec<String>>,
    disable_hsts: Option<bool>,
    access_ttl: Option<String>,
    refresh_ttl: Option<String>,
    session_idle: Option<String>,
    session_ttl: Option<String>,
    key_refresh: Option<String>,
    auth_cache_ttl: Option<String>,
}

/// A count in the config file, written as a number (`25`) or as text (`"25"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    fn into_text(self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t,
        }
    }
}

/// The JWT signing algorithm (re-exported from the core).
pub use tessera_core::jwt::Alg as JwtAlg;

/// Where users, keys and (by default) sessions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file (or `:memory:`), as a sqlx URL.
    Sqlite(String),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// A secret setting: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Every setting, resolved and valid.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Address of the metrics listener; no metrics when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest wait for a request's headers (and on an idle connection).
    pub header_read_timeout: Duration,
    /// Longest wait for a request's body once its headers are in.
    pub body_read_timeout: Duration,
    /// Most client connections open at once, before the open-file limit.
    pub max_connections: usize,
    /// The main database.
    pub database: DatabaseUrl,
    /// PostgreSQL schema.
    pub database_schema: Option<String>,
    /// PostgreSQL pool size.
    pub database_max_connections: u32,
    /// Redis URL, when sessions live in Redis.
    pub redis: Option<String>,
    /// Prefix of Redis keys.
    pub redis_prefix: String,
    /// `iss` of tokens.
    pub issuer: String,
    /// `aud` of tokens.
    pub audience: String,
    /// Signing algorithm.
    pub jwt_alg: JwtAlg,
    /// Refresh-token grace window.
    pub refresh_grace: Duration,
    /// Clock-skew allowance.
    pub leeway: Duration,
    /// Key-encryption key (32 bytes).
    pub master_key: Option<Secret>,
    /// Admin bearer key.
    pub admin_key: Option<Secret>,
    /// Plain-HTTP development cookies.
    pub insecure_dev_cookies: bool,
    /// Development cookies even on an address other machines can reach.
    pub allow_insecure_cookies_on_network: bool,
    /// Whether `POST /v1/users` accepts registrations.
    pub registration_open: bool,
    /// Whether the client address comes from X-Forwarded-For.
    pub trust_forwarded_for: bool,
    /// Origins (`scheme://host[:port]`, lowercase) trusted besides the
    /// server's own.
    pub trusted_origins: Vec<String>,
    /// Whether HTTPS answers carry Strict-Transport-Security.
    pub hsts: bool,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Session idle timeout.
    pub session_idle: Duration,
    /// Session absolute lifetime.
    pub session_ttl: Duration,
    /// Interval of the signing-key reload.
    pub key_refresh: Duration,
    /// Longest a cached session or user is trusted; zero: no cache.
    pub auth_cache_ttl: Duration,
}

/// Parses a duration of the form `docs/api.md` uses: a number with a unit
/// (`ms`, `s`, `m`, `h`, `d`), or several in a row (`1h30m`).
///
/// ```
/// use tessera_server::settings::parse_duration;
/// assert_eq!(parse_duration("15m"), Ok(time::Duration::minutes(15)));
/// assert_eq!(parse_duration("1h30m"), Ok(time::Duration::minutes(90)));
/// assert!(parse_duration("15").is_err());
/// ```
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let bad = || format!("{raw:?} is not a duration like 30s, 15m, 24h or 14d");
    let s = raw.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return Err(bad());
        }
        // Bounded first, so that no unit's multiplication can overflow.
        let n: i64 = rest[..digits]
            .parse()
            .ok()
            .filter(|n| *n <= 315_360_000_000)
            .ok_or_else(bad)?;
        let part = match &rest[digits..digits + unit_len] {
            "ms" => Duration::milliseconds(n),
            "s" => Duration::seconds(n),
            "m" => Duration::minutes(n),
            "h" => Duration::hours(n),
            "d" => Duration::days(n),
            _ => return Err(bad()),
        };
        // Anything beyond ten years is a typo, and would overflow date maths.
        total = total
            .checked_add(part)
            .filter(|t| *t <= Duration::days(3650))
            .ok_or_else(bad)?;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// A URL with the password of its user part replaced by `***`, for output.
///
/// ```
/// use tessera_server::settings::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db/x"), "postgres://app:***@db/x");
/// assert_eq!(redact_url("redis://:pw@cache:6379"), "redis://:***@cache:6379");
/// assert_eq!(redact_url("sqlite://tessera.db"), "sqlite://tessera.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Writes a duration back in the largest unit that divides it (`90s` → `90s`,
/// `600s` → `10m`), the inverse of [`parse_duration`] for whole values. One
/// day is written `24h`, as the help and the README write it; days start at
/// `2d`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.whole_milliseconds();
    if ms == 86_400_000 {
        return "24h".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms == 0 {
        return "0s".to_owned();
    }
    format!("{ms}ms")
}

macro_rules! setting {
    ($name:literal, $flag:literal, $env:literal) => {
        SettingMeta {
            name: $name,
            flag: $flag,
            env: $env,
        }
    };
}

#[derive(Clone, Copy)]
struct SettingMeta {
    name: &'static str,
    flag: &'static str,
    env: &'static str,
}

impl SettingMeta {
    fn err(self, problem: impl Into<String>) -> SettingError {
        SettingError {
            name: self.name,
            flag: self.flag,
            env: self.env,
            problem: problem.into(),
        }
    }

    fn duration(self, value: Option<String>, default: Duration) -> Result<Duration, SettingError> {
        value.map_or(Ok(default), |v| parse_duration(&v).map_err(|p| self.err(p)))
    }

    /// A list of web origins: `http://` or `https://`, a host, an optional
    /// port, nothing after (a trailing `/` is dropped); lowercased, as
    /// browsers send them in `Origin`.
    fn origins(self, value: Option<Vec<String>>) -> Result<Vec<String>, SettingError> {
        let mut out = Vec::new();
        for raw in value.unwrap_or_default() {
            let origin = raw.trim().trim_end_matches('/').to_ascii_lowercase();
            if origin.is_empty() {
                continue;
            }
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = host.is_some_and(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            });
            if !valid {
                return Err(self.err(format!(
                    "{raw:?} is not an origin: write scheme://host[:port], such as \
                     https://app.example.com, with no path"
                )));
            }
            out.push(origin);
        }
        Ok(out)
    }

    fn lifetime(self, value: Option<String>, default: Duration) -> Result<Duration, SettingError> {
        let d = self.duration(value, default)?;
        if d < Duration::seconds(1) {
            return Err(self.err("must be at least 1s"));
        }
        Ok(d)
    }
}

const CONFIG: SettingMeta = setting!("config", "config", "TESSERA_CONFIG");
const LISTEN: SettingMeta = setting!("listen", "listen", "TESSERA_LISTEN");
const METRICS_LISTEN: SettingMeta =
    setting!("metrics_listen", "metrics-listen", "TESSERA_METRICS_LISTEN");
const HEADER_READ_TIMEOUT: SettingMeta = setting!(
    "header_read_timeout",
    "header-read-timeout",
    "TESSERA_HEADER_READ_TIMEOUT"
);
const BODY_READ_TIMEOUT: SettingMeta = setting!(
    "body_read_timeout",
    "body-read-timeout",
    "TESSERA_BODY_READ_TIMEOUT"
);
const MAX_CONNECTIONS: SettingMeta = setting!(
    "max_connections",
    "max-connections",
    "TESSERA_MAX_CONNECTIONS"
);
const DATABASE: SettingMeta = setting!("database", "database", "TESSERA_DATABASE_URL");
const REDIS: SettingMeta = setting!("redis", "redis", "TESSERA_REDIS_URL");
const DATABASE_SCHEMA: SettingMeta = setting!(
    "database_schema",
    "database-schema",
    "TESSERA_DATABASE_SCHEMA"
);
const DATABASE_MAX_CONNECTIONS: SettingMeta = setting!(
    "database_max_connections",
    "database-max-connections",
    "TESSERA_DATABASE_MAX_CONNECTIONS"
);
const REDIS_PREFIX: SettingMeta = setting!("redis_prefix", "redis-prefix", "TESSERA_REDIS_PREFIX");
const ISSUER: SettingMeta = setting!("issuer", "issuer", "TESSERA_ISSUER");
const AUDIENCE: SettingMeta = setting!("audience", "audience", "TESSERA_AUDIENCE");
const JWT_ALG: SettingMeta = setting!("jwt_alg", "jwt-alg", "TESSERA_JWT_ALG");
const REFRESH_GRACE: SettingMeta =
    setting!("refresh_grace", "refresh-grace", "TESSERA_REFRESH_GRACE");
const LEEWAY: SettingMeta = setting!("leeway", "leeway", "TESSERA_LEEWAY");
const MASTER_KEY: SettingMeta = setting!("master_key", "master-key", "TESSERA_MASTER_KEY");
const ADMIN_KEY: SettingMeta = setting!("admin_key", "admin-key", "TESSERA_ADMIN_KEY");
const ACCESS_TTL: SettingMeta = setting!("access_ttl", "access-ttl", "TESSERA_ACCESS_TTL");
const REFRESH_TTL: SettingMeta = setting!("refresh_ttl", "refresh-ttl", "TESSERA_REFRESH_TTL");
const SESSION_IDLE: SettingMeta = setting!("session_idle", "session-idle", "TESSERA_SESSION_IDLE");
const SESSION_TTL: SettingMeta = setting!("session_ttl", "session-ttl", "TESSERA_SESSION_TTL");
const KEY_REFRESH: SettingMeta = setting!("key_refresh", "key-refresh", "TESSERA_KEY_REFRESH");
const AUTH_CACHE_TTL: SettingMeta =
    setting!("auth_cache_ttl", "auth-cache-ttl", "TESSERA_AUTH_CACHE_TTL");
const INSECURE_DEV_COOKIES: SettingMeta = setting!(
    "insecure_dev_cookies",
    "insecure-dev-cookies",
    "TESSERA_INSECURE_DEV_COOKIES"
);
const ALLOW_INSECURE_COOKIES_ON_NETWORK: SettingMeta = setting!(
    "allow_insecure_cookies_on_network",
    "allow-insecure-cookies-on-network",
    "TESSERA_ALLOW_INSECURE_COOKIES_ON_NETWORK"
);
const DISABLE_REGISTRATION: SettingMeta = setting!(
    "disable_registration",
    "disable-registration",
    "TESSERA_DISABLE_REGISTRATION"
);
const TRUST_FORWARDED_FOR: SettingMeta = setting!(
    "trust_forwarded_for",
    "trust-forwarded-for",
    "TESSERA_TRUST_FORWARDED_FOR"
);
const TRUSTED_ORIGINS: SettingMeta = setting!(
    "trusted_origins",
    "trusted-origins",
    "TESSERA_TRUSTED_ORIGINS"
);
const DISABLE_HSTS: SettingMeta = setting!("disable_hsts", "disable-hsts", "TESSERA_DISABLE_HSTS");

/// Every setting: its key in the file, its flag and its variable.
const ALL: [SettingMeta; 30] = [
    CONFIG,
    LISTEN,
    METRICS_LISTEN,
    HEADER_READ_TIMEOUT,
    BODY_READ_TIMEOUT,
    MAX_CONNECTIONS,
    DATABASE,
    DATABASE_SCHEMA,
    DATABASE_MAX_CONNECTIONS,
    REDIS,
    REDIS_PREFIX,
    ISSUER,
    AUDIENCE,
    JWT_ALG,
    REFRESH_GRACE,
    LEEWAY,
    MASTER_KEY,
    ADMIN_KEY,
    INSECURE_DEV_COOKIES,
    ALLOW_INSECURE_COOKIES_ON_NETWORK,
    DISABLE_REGISTRATION,
    TRUST_FORWARDED_FOR,
    TRUSTED_ORIGINS,
    DISABLE_HSTS,
    ACCESS_TTL,
    REFRESH_TTL,
    SESSION_IDLE,
    SESSION_TTL,
    KEY_REFRESH,
    AUTH_CACHE_TTL,
];

/// The settings by name (a flag's clap id), `config` included.
pub fn known_settings() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|m| m.name)
}

/// The environment variables tessera reads, `TESSERA_CONFIG` included.
pub fn known_variables() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|m| m.env)
}

/// Variables of tessera's own scripts and tests, which the binary ignores.
const TOOLING_VARIABLES: [&str; 3] = ["TESSERA_INTEROP_VENV", "TESSERA_CMD", "TESSERA_MODES"];

/// A warning for each `TESSERA_*` variable among `names` that tessera does
/// not read (a typo is otherwise silently ignored), naming the closest one
/// it does read. Never the value, which may be a secret.
pub fn unknown_variables<I, S>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut warnings = Vec::new();
    for name in names {
        let name = name.as_ref();
        if !name.starts_with("TESSERA_")
            || known_variables().any(|k| k == name)
            || TOOLING_VARIABLES.contains(&name)
            || name.starts_with("TESSERA_TEST_")
        {
            continue;
        }
        let hint = match closest(name, known_variables()) {
            Some(known) => format!("did you mean {known}?"),
            None => "`tessera serve --help` lists the variables tessera reads".to_owned(),
        };
        warnings.push(format!(
            "the environment variable {name} is not a tessera setting and is ignored; {hint}"
        ));
    }
    warnings
}

/// The candidate nearest to `name` by edit distance, if it is near enough
/// to be what was meant (at most a third of the name's length away).
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::levenshtein(&name, &c.to_ascii_lowercase()), c))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= (name.len() / 3).max(2))
        .map(|(_, c)| c)
}

/// How a key is written in the file, for the hint after a mistake.
fn file_example(key: &str) -> Option<&'static str> {
    Some(match key {
        "listen" => "listen = \"127.0.0.1:7480\"",
        "metrics_listen" => "metrics_listen = \"127.0.0.1:9480\"",
        "header_read_timeout" => "header_read_timeout = \"10s\"",
        "body_read_timeout" => "body_read_timeout = \"10s\"",
        "max_connections" => "max_connections = 10000",
        "database" => "database = \"sqlite://tessera.db\"",
        "database_schema" => "database_schema = \"tessera\"",
        "database_max_connections" => "database_max_connections = 10",
        "redis" => "redis = \"redis://127.0.0.1:6379\"",
        "redis_prefix" => "redis_prefix = \"tessera\"",
        "issuer" => "issuer = \"https://auth.example.com\"",
        "audience" => "audience = \"https://api.example.com\"",
        "jwt_alg" => "jwt_alg = \"EdDSA\"",
        "refresh_grace" => "refresh_grace = \"10s\"",
        "leeway" => "leeway = \"5s\"",
        "master_key" => "master_key = \"<64 hexadecimal characters>\"",
        "admin_key" => "admin_key = \"<at least 16 characters>\"",
        "insecure_dev_cookies" => "insecure_dev_cookies = true",
        "allow_insecure_cookies_on_network" => "allow_insecure_cookies_on_network = true",
        "disable_registration" => "disable_registration = true",
        "trust_forwarded_for" => "trust_forwarded_for = true",
        "trusted_origins" => "trusted_origins = [\"https://app.example.com\"]",
        "disable_hsts" => "disable_hsts = true",
        "access_ttl" => "access_ttl = \"15m\"",
        "refresh_ttl" => "refresh_ttl = \"14d\"",
        "session_idle" => "session_idle = \"30m\"",
        "session_ttl" => "session_ttl = \"24h\"",
        "key_refresh" => "key_refresh = \"10s\"",
        "auth_cache_ttl" => "auth_cache_ttl = \"5s\"",
        _ => return None,
    })
}

/// The line (from 1) on which `key` is set in a TOML text, if it is.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// One line on a TOML error: the file, the line, the key, what is wrong and
/// how it is written. Never the value of a secret.
fn toml_problem(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    // serde's words for a value that is neither a number nor text.
    let message = if message.contains("untagged enum NumberOrText") {
        "expected a number".to_owned()
    } else {
        message
    };
    let line_no = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let place = match line_no {
        Some(n) => format!("{} line {n}", path.display()),
        None => path.display().to_string(),
    };
    if let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        let hint = match closest(name, ALL.iter().map(|m| m.name)) {
            Some(known) => format!("did you mean {known}?"),
            None => "examples/tessera.toml lists every key".to_owned(),
        };
        return format!("{place}: unknown key {name}; {hint}");
    }
    let key = line_no
        .and_then(|n| text.lines().nth(n - 1))
        .and_then(|line| line.split_once('='))
        .map(|(key, _)| key.trim().trim_matches(['"', '\'']))
        .filter(|key| file_example(key).is_some());
    match key {
        Some(key @ ("master_key" | "admin_key")) => format!(
            "{place}: {key} is not a string in quotes; write it like {}",
            file_example(key).unwrap_or_default()
        ),
        Some(key) => format!(
            "{place}: {key}: {message}; write it like {}",
            file_example(key).unwrap_or_default()
        ),
        None => format!("{place}: {message}"),
    }
}

/// The config file: its path, its text and what it says.
struct ConfigFile<'a> {
    path: &'a Path,
    text: String,
    settings: FileSettings,
}

fn read_file(path: Option<&Path>) -> Result<Option<ConfigFile<'_>>, SettingError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| CONFIG.err(format!("cannot read {}: {e}", path.display())))?;
    let settings = toml::from_str(&text).map_err(|e| CONFIG.err(toml_problem(path, &text, &e)))?;
    Ok(Some(ConfigFile {
        path,
        text,
        settings,
    }))
}

fn parse_database(value: Option<String>) -> Result<DatabaseUrl, SettingError> {
    let url = value.unwrap_or_else(|| "sqlite://tessera.db".to_owned());
    if url.starts_with("sqlite:") {
        Ok(DatabaseUrl::Sqlite(url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseUrl::Postgres(url))
    } else {
        Err(DATABASE.err(format!(
            "{url:?} is neither sqlite://PATH nor postgres://..."
        )))
    }
}

fn parse_hex_key(meta: SettingMeta, value: Option<String>) -> Result<Option<Secret>, SettingError> {
    let Some(v) = value else { return Ok(None) };
    let v = v.trim().to_owned();
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(meta.err("must be 32 bytes written as 64 hexadecimal characters"));
    }
    // The same rule the key itself applies: no all-zero or patterned key.
    if let Err(e @ tessera_core::sealed::SealError::WeakMasterKey) =
        tessera_core::sealed::MasterKey::from_hex(&v)
    {
        return Err(meta.err(e.to_string()));
    }
    Ok(Some(Secret(v)))
}

impl Settings {
    /// How long a superseded signing key stays published and accepted: until
    /// the last token it signed has expired (`access_ttl + leeway`), plus one
    /// `key_refresh`, during which an instance that has not reloaded yet may
    /// still sign with it.
    pub fn key_publication(&self) -> Duration {
        self.access_ttl + self.leeway + self.key_refresh
    }

    /// The settings as TOML lines, secrets hidden, for `tessera config check`.
    pub fn summary(&self) -> String {
        let database = match &self.database {
            DatabaseUrl::Sqlite(u) | DatabaseUrl::Postgres(u) => u,
        };
        let hidden = |name: &str, s: &Option<Secret>| {
            if s.is_some() {
                format!("# {name}: set (hidden)")
            } else {
                format!("# {name}: unset")
            }
        };
        [
            format!("listen = {:?}", self.listen.to_string()),
            match &self.metrics_listen {
                Some(addr) => format!("metrics_listen = {:?}", addr.to_string()),
                None => "# metrics_listen: unset (no metrics)".to_owned(),
            },
            format!(
                "header_read_timeout = {:?}",
                format_duration(self.header_read_timeout)
            ),
            format!(
                "body_read_timeout = {:?}",
                format_duration(self.body_read_timeout)
            ),
            format!("max_connections = {}", self.max_connections),
            format!("database = {:?}", redact_url(database)),
            match &self.database_schema {
                Some(schema) => format!("database_schema = {schema:?}"),
                None => "# database_schema: unset".to_owned(),
            },
            format!(
                "database_max_connections = {}",
                self.database_max_connections
            ),
            match &self.redis {
                Some(url) => format!("redis = {:?}", redact_url(url)),
                None => "# redis: unset".to_owned(),
            },
            format!("redis_prefix = {:?}", self.redis_prefix),
            format!("issuer = {:?}", self.issuer),
            format!("audience = {:?}", self.audience),
            format!("jwt_alg = {:?}", self.jwt_alg.as_str()),
            format!("refresh_grace = {:?}", format_duration(self.refresh_grace)),
            format!("leeway = {:?}", format_duration(self.leeway)),
            hidden("master_key", &self.master_key),
            hidden("admin_key", &self.admin_key),
            format!("insecure_dev_cookies = {}", self.insecure_dev_cookies),
            format!(
                "allow_insecure_cookies_on_network = {}",
                self.allow_insecure_cookies_on_network
            ),
            format!("disable_registration = {}", !self.registration_open),
            format!("trust_forwarded_for = {}", self.trust_forwarded_for),
            format!("trusted_origins = {:?}", self.trusted_origins),
            format!("disable_hsts = {}", !self.hsts),
            format!("access_ttl = {:?}", format_duration(self.access_ttl)),
            format!("refresh_ttl = {:?}", format_duration(self.refresh_ttl)),
            format!("session_idle = {:?}", format_duration(self.session_idle)),
            format!("session_ttl = {:?}", format_duration(self.session_ttl)),
            format!("key_refresh = {:?}", format_duration(self.key_refresh)),
            format!(
                "auth_cache_ttl = {:?}",
                format_duration(self.auth_cache_ttl)
            ),
        ]
        .join("\n")
    }

    /// Merges flags and environment (`args`) over the config file over the
    /// defaults, and validates the result. A bad value that came from the
    /// file is shown with the file's name and line.
    pub fn resolve(args: SettingsArgs) -> Result<Self, SettingError> {
        let config = args.config.clone();
        let Some(file) = read_file(config.as_deref())? else {
            return Self::merge(args, FileSettings::default());
        };
        let given = args.given();
        Self::merge(args, file.settings).map_err(|mut e| {
            if !given.contains(&e.name)
                && let Some(n) = line_of_key(&file.text, e.name)
            {
                e.problem
                    .push_str(&format!(" (set in {} line {n})", file.path.display()));
            }
            e
        })
    }

    /// What `serve` needs beyond valid values, which `config check` checks
    /// too: a master key with PostgreSQL, and development cookies only on a
    /// loopback address unless allowed elsewhere.
    pub fn check_serve(&self) -> Result<(), SettingError> {
        if matches!(self.database, DatabaseUrl::Postgres(_)) && self.master_key.is_none() {
            return Err(MASTER_KEY.err(
                "required with PostgreSQL, and the same on every instance: \
                 make one with `openssl rand -hex 32` and set it in TESSERA_MASTER_KEY",
            ));
        }
        if self.insecure_dev_cookies
            && !self.listen.ip().is_loopback()
            && !self.allow_insecure_cookies_on_network
        {
            return Err(INSECURE_DEV_COOKIES.err(format!(
                "development cookies (no Secure) are for this machine only, and {} can be \
                 reached from other machines, to which the cookies would travel in clear text: \
                 listen on 127.0.0.1, or serve HTTPS without --insecure-dev-cookies, or add \
                 --allow-insecure-cookies-on-network (TESSERA_ALLOW_INSECURE_COOKIES_ON_NETWORK=1) \
                 if that is really meant",
                self.listen
            )));
        }
        Ok(())
    }

    /// The database, for messages: an SQLite file's absolute path, or the
    /// PostgreSQL URL without its password (and the schema).
    pub fn database_shown(&self) -> String {
        match &self.database {
            DatabaseUrl::Sqlite(url) => match tessera_store_sqlite::SqliteStore::file_of(url) {
                Some(path) => std::path::absolute(&path)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
                None => "an in-memory SQLite database".to_owned(),
            },
            DatabaseUrl::Postgres(url) => match &self.database_schema {
                Some(schema) => format!("{} (schema {schema})", redact_url(url)),
                None => redact_url(url),
            },
        }
    }

    fn merge(args: SettingsArgs, f: FileSettings) -> Result<Self, SettingError> {
        let listen_raw = args
            .listen
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:7480".into());
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            LISTEN.err(format!(
                "{listen_raw:?} is not an address like 127.0.0.1:7480"
            ))
        })?;

        let metrics_listen = match args.metrics_listen.or(f.metrics_listen) {
            None => None,
            Some(raw) => Some(raw.parse::<SocketAddr>().map_err(|_| {
                METRICS_LISTEN.err(format!("{raw:?} is not an address like 127.0.0.1:9480"))
            })?),
        };
        if let Some(m) = metrics_listen
            && m == listen
            && m.port() != 0
        {
            return Err(METRICS_LISTEN.err(format!(
                "{m} is the --listen address; give the metrics an address of their own"
            )));
        }
        let header_read_timeout = HEADER_READ_TIMEOUT.lifetime(
            args.header_read_timeout.or(f.header_read_timeout),
            Duration::seconds(10),
        )?;
        let body_read_timeout = BODY_READ_TIMEOUT.lifetime(
            args.body_read_timeout.or(f.body_read_timeout),
            Duration::seconds(10),
        )?;
        let max_connections = match args
            .max_connections
            .or(f.max_connections.map(NumberOrText::into_text))
        {
            None => 10_000,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    MAX_CONNECTIONS.err(format!("{n:?} is not a number from 1 to 1000000"))
                })?,
        };

        let database = parse_database(args.database.or(f.database))?;
        let redis = args.redis.or(f.redis);
        if let Some(url) = redis
            .as_ref()
            .filter(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
        {
            return Err(REDIS.err(format!("{url:?} is not a redis:// URL")));
        }

        let database_schema = args.database_schema.or(f.database_schema);
        if let Some(schema) = &database_schema {
            let plain = schema.starts_with(|c: char| c.is_ascii_lowercase())
                && schema.len() <= 63
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return Err(DATABASE_SCHEMA
                    .err("must be 1 to 63 characters of a-z, 0-9 and _, starting with a letter"));
            }
            if !matches!(database, DatabaseUrl::Postgres(_)) {
                return Err(DATABASE_SCHEMA.err("applies to PostgreSQL only"));
            }
        }
        let database_max_connections = match args
            .database_max_connections
            .or(f.database_max_connections.map(NumberOrText::into_text))
        {
            None => 10,
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    DATABASE_MAX_CONNECTIONS.err(format!("{n:?} is not a number from 1 to 1000"))
                })?,
        };
        let redis_prefix = args
            .redis_prefix
            .or(f.redis_prefix)
            .unwrap_or_else(|| "tessera".into());
        if redis_prefix.is_empty() || redis_prefix.contains(['{', '}', ' ']) {
            return Err(REDIS_PREFIX.err("must be non-empty, without spaces or braces"));
        }

        let issuer = args
            .issuer
            .or(f.issuer)
            .unwrap_or_else(|| "http://127.0.0.1:7480".into());
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(ISSUER.err(format!("{issuer:?} is not an http(s) URL")));
        }
        let audience = args
            .audience
            .or(f.audience)
            .unwrap_or_else(|| issuer.clone());
        if audience.trim().is_empty() {
            return Err(AUDIENCE.err("must not be empty"));
        }

        let jwt_alg = match args.jwt_alg.or(f.jwt_alg) {
            None => JwtAlg::EdDsa,
            Some(name) => JwtAlg::parse(&name).ok_or_else(|| {
                JWT_ALG.err(format!("{name:?} is not one of EdDSA, ES256, RS256, HS256"))
            })?,
        };

        let refresh_grace =
            REFRESH_GRACE.duration(args.refresh_grace.or(f.refresh_grace), Duration::ZERO)?;
        let leeway = LEEWAY.duration(args.leeway.or(f.leeway), Duration::seconds(5))?;
        if leeway > Duration::seconds(60) {
            return Err(LEEWAY.err("must be at most 60s"));
        }

        let master_key = parse_hex_key(MASTER_KEY, args.master_key.or(f.master_key))?;
        let admin_key = match args.admin_key.or(f.admin_key) {
            Some(k) if k.len() < 16 => return Err(ADMIN_KEY.err("must be at least 16 characters")),
            other => other.map(Secret),
        };

        let auth_cache_ttl = AUTH_CACHE_TTL.duration(
            args.auth_cache_ttl.or(f.auth_cache_ttl),
            Duration::seconds(5),
        )?;
        if auth_cache_ttl > Duration::minutes(5) {
            return Err(AUTH_CACHE_TTL.err("must be at most 5m"));
        }
        let session_idle =
            SESSION_IDLE.lifetime(args.session_idle.or(f.session_idle), Duration::minutes(30))?;
        let session_ttl =
            SESSION_TTL.lifetime(args.session_ttl.or(f.session_ttl), Duration::hours(24))?;

        Ok(Self {
            listen,
            metrics_listen,
            header_read_timeout,
            body_read_timeout,
            max_connections,
            database,
            database_schema,
            database_max_connections,
            redis,
            redis_prefix,
            issuer,
            audience,
            jwt_alg,
            refresh_grace,
            leeway,
            master_key,
            admin_key,
            insecure_dev_cookies: args
                .insecure_dev_cookies
                .or(f.insecure_dev_cookies)
                .unwrap_or(false),
            allow_insecure_cookies_on_network: args
                .allow_insecure_cookies_on_network
                .or(f.allow_insecure_cookies_on_network)
                .unwrap_or(false),
            registration_open: !args
                .disable_registration
                .or(f.disable_registration)
                .unwrap_or(false),
            trust_forwarded_for: args
                .trust_forwarded_for
                .or(f.trust_forwarded_for)
                .unwrap_or(false),
            trusted_origins: TRUSTED_ORIGINS.origins(
                args.trusted_origins
                    .map(|list| list.split(',').map(str::to_owned).collect())
                    .or(f.trusted_origins),
            )?,
            hsts: !args.disable_hsts.or(f.disable_hsts).unwrap_or(false),
            access_ttl: ACCESS_TTL
                .lifetime(args.access_ttl.or(f.access_ttl), Duration::minutes(15))?,
            refresh_ttl: REFRESH_TTL
                .lifetime(args.refresh_ttl.or(f.refresh_ttl), Duration::days(14))?,
            session_idle,
            session_ttl,
            key_refresh: KEY_REFRESH
                .lifetime(args.key_refresh.or(f.key_refresh), Duration::seconds(10))?,
            auth_cache_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::seconds(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::minutes(15)));
        assert_eq!(parse_duration("24h"), Ok(Duration::hours(24)));
        assert_eq!(parse_duration("14d"), Ok(Duration::days(14)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::milliseconds(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::minutes(90)));
        for bad in [
            "",
            "15",
            "m",
            "15x",
            "-5s",
            "1.5h",
            "15 m",
            "99999999999999999999s",
            "4000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_duration_or_an_error_never_a_panic(raw in "\\PC{0,40}") {
            let _ = parse_duration(&raw);
        }

        #[test]
        fn whole_durations_round_trip(n in 1i64..3650, unit in proptest::sample::select(vec!["ms", "s", "m", "h", "d"])) {
            let parsed = parse_duration(&format!("{n}{unit}")).unwrap();
            proptest::prop_assert_eq!(parse_duration(&format_duration(parsed)).unwrap(), parsed);
        }
    }

    #[test]
    fn formatting_round_trips() {
        for raw in ["0s", "250ms", "90s", "10m", "24h", "36h", "2d", "14d"] {
            assert_eq!(format_duration(parse_duration(raw).unwrap()), raw);
        }
    }

    #[test]
    fn defaults_match_the_api() {
        let s = Settings::resolve(SettingsArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7480");
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.header_read_timeout, Duration::seconds(10));
        assert_eq!(s.body_read_timeout, Duration::seconds(10));
        assert_eq!(s.max_connections, 10_000);
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite("sqlite://tessera.db".into())
        );
        assert_eq!(s.issuer, "http://127.0.0.1:7480");
        assert_eq!(s.audience, s.issuer);
        assert_eq!(s.jwt_alg, JwtAlg::EdDsa);
        assert_eq!(s.leeway, Duration::seconds(5));
        assert_eq!(s.refresh_grace, Duration::ZERO);
        assert_eq!(s.access_ttl, Duration::minutes(15));
        assert_eq!(s.refresh_ttl, Duration::days(14));
        assert_eq!(s.session_idle, Duration::minutes(30));
        assert_eq!(s.session_ttl, Duration::hours(24));
        assert!(!s.insecure_dev_cookies);
        assert!(s.registration_open);
    }

    #[test]
    fn leeway_is_capped() {
        let args = SettingsArgs {
            leeway: Some("61s".into()),
            ..Default::default()
        };
        let err = Settings::resolve(args).unwrap_err();
        assert_eq!(err.name, "leeway");
        assert!(err.to_string().contains("--leeway"));
    }

    #[test]
    fn unknown_algorithm_is_named() {
        let args = SettingsArgs {
            jwt_alg: Some("none".into()),
            ..Default::default()
        };
        assert_eq!(Settings::resolve(args).unwrap_err().name, "jwt_alg");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "session_idle = \"5m\"\nsession_ttl = \"1h\"\n").unwrap();
        let args = SettingsArgs {
            config: Some(path),
            session_idle: Some("7m".into()),
            ..Default::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.session_idle, Duration::minutes(7));
        assert_eq!(s.session_ttl, Duration::hours(1));
    }

    #[test]
    fn numbers_in_the_file_may_be_written_as_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "database = \"postgres://x@h/db\"\ndatabase_max_connections = 25\n",
        )
        .unwrap();
        let args = SettingsArgs {
            config: Some(path),
            ..Default::default()
        };
        assert_eq!(
            Settings::resolve(args).unwrap().database_max_connections,
            25
        );
    }

    #[test]
    fn metrics_listen_comes_from_the_file_and_is_not_the_api_address() {
        let (_dir, args) = file_with("metrics_listen = \"127.0.0.1:9480\"\n");
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9480".parse().unwrap()));
        assert!(s.summary().contains("metrics_listen = \"127.0.0.1:9480\""));
        let (_dir, mut args) = file_with("metrics_listen = \"127.0.0.1:7480\"\n");
        args.listen = Some("127.0.0.1:7480".into());
        assert_eq!(Settings::resolve(args).unwrap_err().name, "metrics_listen");
        let (_dir, args) = file_with("metrics_listen = \"localhost\"\n");
        assert_eq!(Settings::resolve(args).unwrap_err().name, "metrics_listen");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "sesion_idle = \"5m\"\n").unwrap();
        let args = SettingsArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = Settings::resolve(args).unwrap_err();
        assert_eq!(err.name, "config");
        assert!(err.problem.contains("sesion_idle"), "{}", err.problem);
        assert!(
            err.problem.contains("line 1") && err.problem.contains("did you mean session_idle?"),
            "{}",
            err.problem
        );
    }

    #[test]
    fn one_day_is_written_as_the_help_writes_it() {
        assert_eq!(format_duration(Duration::hours(24)), "24h");
        assert_eq!(format_duration(Duration::hours(48)), "2d");
        let s = Settings::resolve(SettingsArgs::default()).unwrap();
        assert!(
            s.summary().contains("session_ttl = \"24h\""),
            "{}",
            s.summary()
        );
    }

    fn file_with(text: &str) -> (tempfile::TempDir, SettingsArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        let args = SettingsArgs {
            config: Some(path),
            ..Default::default()
        };
        (dir, args)
    }

    #[test]
    fn file_errors_name_the_line_the_key_and_how_to_write_it() {
        let (_dir, args) = file_with("session_idle = \"5m\"\nleeway = 5\n");
        let err = Settings::resolve(args).unwrap_err();
        assert_eq!(err.name, "config");
        for part in ["t.toml line 2", "leeway", "leeway = \"5s\""] {
            assert!(err.problem.contains(part), "{part}: {}", err.problem);
        }
        // Not TOML: text without quotes.
        let (_dir, args) = file_with("\n\nsession_idle = 5m\n");
        let err = Settings::resolve(args).unwrap_err();
        for part in ["line 3", "session_idle = \"30m\""] {
            assert!(err.problem.contains(part), "{part}: {}", err.problem);
        }
        // A valid value of the wrong kind.
        let (_dir, args) = file_with("database_max_connections = true\n");
        let err = Settings::resolve(args).unwrap_err();
        assert!(err.problem.contains("expected a number"), "{}", err.problem);
        // A value that is valid TOML but not a valid setting.
        let (_dir, args) = file_with("# tessera\nleeway = \"90s\"\n");
        let err = Settings::resolve(args).unwrap_err();
        assert_eq!(err.name, "leeway");
        assert!(err.problem.contains("t.toml line 2"), "{}", err.problem);
        // …but not when a flag or variable gave it.
        let (_dir, mut args) = file_with("leeway = \"5s\"\n");
        args.leeway = Some("90s".into());
        let err = Settings::resolve(args).unwrap_err();
        assert!(!err.problem.contains("t.toml"), "{}", err.problem);
    }

    #[test]
    fn file_errors_never_show_a_secret() {
        for text in [
            "master_key = 123456789\n",
            "admin_key = 987654321987\n",
            "admin_key = true\n",
        ] {
            let (_dir, args) = file_with(text);
            let err = Settings::resolve(args).unwrap_err();
            let shown = err.to_string();
            assert!(
                !shown.contains("123456789") && !shown.contains("987654321987"),
                "{shown}"
            );
            assert!(shown.contains("in quotes"), "{shown}");
        }
    }

    #[test]
    fn misspelt_variables_are_named_with_the_closest_known_one() {
        let warnings = unknown_variables([
            "PATH",
            "TESSERA_LISTEN",
            "TESSERA_SESION_IDLE",
            "TESSERA_TEST_DATABASE_URL",
            "TESSERA_INTEROP_VENV",
            "TESSERA_WHATEVER_THIS_IS",
        ]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("TESSERA_SESION_IDLE")
                && warnings[0].contains("did you mean TESSERA_SESSION_IDLE?"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].contains("TESSERA_WHATEVER_THIS_IS") && !warnings[1].contains("mean"),
            "{}",
            warnings[1]
        );
    }

    #[test]
    fn serve_needs_a_master_key_with_postgres() {
        let args = SettingsArgs {
            database: Some("postgres://app@db/tessera".into()),
            ..Default::default()
        };
        let settings = Settings::resolve(args).unwrap();
        let err = settings.check_serve().unwrap_err();
        assert_eq!(err.name, "master_key");
        assert!(err.problem.contains("openssl rand -hex 32"), "{err}");
    }

    #[test]
    fn development_cookies_stay_on_this_machine_unless_allowed() {
        let check = |listen: &str, allow: bool| {
            Settings::resolve(SettingsArgs {
                listen: Some(listen.into()),
                insecure_dev_cookies: Some(true),
                allow_insecure_cookies_on_network: Some(allow),
                ..Default::default()
            })
            .unwrap()
            .check_serve()
        };
        for loopback in ["127.0.0.1:7480", "127.0.0.2:0", "[::1]:7480"] {
            assert!(check(loopback, false).is_ok(), "{loopback}");
        }
        for network in ["0.0.0.0:7480", "[::]:7480", "192.168.1.10:7480"] {
            let err = check(network, false).unwrap_err();
            assert_eq!(err.name, "insecure_dev_cookies");
            assert!(
                err.problem.contains("--allow-insecure-cookies-on-network"),
                "{err}"
            );
            assert!(check(network, true).is_ok(), "{network}");
        }
    }

    #[test]
    fn master_key_must_be_hex() {
        let args = SettingsArgs {
            master_key: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(Settings::resolve(args).unwrap_err().name, "master_key");
        let args = SettingsArgs {
            master_key: Some(
                "5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a".to_owned(),
            ),
            ..Default::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert!(!format!("{s:?}").contains("abab"));
    }
}
