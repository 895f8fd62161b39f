//! The application state every handler shares, and the one place where the
//! settings choose the store backends.

use std::sync::Arc;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_core::SessionPolicy;
use tessera_core::jwt::TokenRules;
use tessera_core::password::HashCost;
use tessera_store::{KeyStore, Ping, RefreshStore, SessionStore, ThrottleStore, UserStore};
use tessera_store_postgres::{PoolOptions, PostgresStore};
use tessera_store_redis::RedisStore;
use tessera_store_sqlite::SqliteStore;

use crate::cookies::CookieConfig;
use crate::keys::Keys;
use crate::passwords::Passwords;
use crate::settings::{DatabaseUrl, Settings};
use crate::token_cache::VerifiedCache;

/// The stores, behind their traits.
#[derive(Clone)]
pub struct Stores {
    /// Accounts.
    pub users: Arc<dyn UserStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Login-failure counters.
    pub throttle: Arc<dyn ThrottleStore>,
    /// Refresh tokens.
    pub refresh: Arc<dyn RefreshStore>,
    /// Signing keys and server secrets.
    pub keys: Arc<dyn KeyStore>,
    /// Every backend, named, for `/readyz`.
    pub health: Vec<(&'static str, Arc<dyn Ping>)>,
}

/// Why the stores could not be opened; `main` turns it into exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreSetupError(pub String);

fn setup_error(setting: &str, flag: &str, env: &str, e: &dyn std::error::Error) -> StoreSetupError {
    StoreSetupError(format!(
        "invalid setting {setting} (--{flag} / {env}): {}",
        crate::error::error_chain(e)
    ))
}

impl Stores {
    /// Opens the backends the settings name. This is the only place that
    /// knows which concrete stores exist: the database (SQLite or
    /// PostgreSQL) holds users and keys, and sessions, refresh tokens and
    /// failure counters unless Redis is configured for them.
    pub async fn open(settings: &Settings) -> Result<Self, StoreSetupError> {
        let db_err = |e: &dyn std::error::Error| {
            setup_error("database", "database", "TESSERA_DATABASE_URL", e)
        };
        let mut stores = match &settings.database {
            DatabaseUrl::Sqlite(url) => Self::all_in(Arc::new(
                SqliteStore::open(url).await.map_err(|e| db_err(&e))?,
            )),
            DatabaseUrl::Postgres(url) => {
                let pool = PoolOptions {
                    max_connections: settings.database_max_connections,
                    ..PoolOptions::default()
                };
                let schema = settings.database_schema.as_deref();
                let store = PostgresStore::open(url, schema, pool)
                    .await
                    .map_err(|e| db_err(&e))?;
                Self::all_in(Arc::new(store))
            }
        };
        if let Some(url) = &settings.redis {
            let redis = Arc::new(
                RedisStore::open(url, &settings.redis_prefix)
                    .await
                    .map_err(|e| setup_error("redis", "redis", "TESSERA_REDIS_URL", &e))?,
            );
            stores.sessions = redis.clone();
            stores.refresh = redis.clone();
            stores.throttle = redis.clone();
            stores.health.push(("redis", redis));
        }
        Ok(stores)
    }

    /// Every store in one backend (a database).
    fn all_in<S>(store: Arc<S>) -> Self
    where
        S: UserStore + KeyStore + SessionStore + RefreshStore + ThrottleStore + Ping + 'static,
    {
        Self {
            users: store.clone(),
            sessions: store.clone(),
            throttle: store.clone(),
            refresh: store.clone(),
            keys: store.clone(),
            health: vec![("database", store)],
        }
    }
}

/// Everything a request handler may need.
pub struct App {
    /// The resolved settings.
    pub settings: Settings,
    /// The stores.
    pub stores: Stores,
    /// Password hashing pool.
    pub passwords: Arc<Passwords>,
    /// Session lifetimes.
    pub policy: SessionPolicy,
    /// Cookie names and flags.
    pub cookies: CookieConfig,
    /// Renders `/metrics`; `None` when another recorder was installed first.
    pub metrics: Option<PrometheusHandle>,
    /// Signing keys.
    pub keys: Keys,
    /// What access tokens must satisfy.
    pub rules: TokenRules,
    /// Access tokens whose signature was already verified.
    pub verified: VerifiedCache,
}

/// The shared state type of the router.
pub type AppState = Arc<App>;

impl App {
    /// Builds the state from settings and opened stores.
    pub fn new(
        settings: Settings,
        stores: Stores,
        keys: Keys,
        metrics: Option<PrometheusHandle>,
    ) -> anyhow::Result<AppState> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let passwords =
            Passwords::new(HashCost::OWASP, cores).context("setting up password hashing")?;
        Ok(Arc::new(Self {
            policy: SessionPolicy {
                idle: settings.session_idle,
                absolute: settings.session_ttl,
            },
            cookies: CookieConfig::new(settings.insecure_dev_cookies),
            rules: TokenRules {
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                alg: settings.jwt_alg,
                access_ttl: settings.access_ttl,
                leeway: settings.leeway,
            },
            verified: VerifiedCache::default(),
            keys,
            settings,
            stores,
            passwords: Arc::new(passwords),
            metrics,
        }))
    }
}
