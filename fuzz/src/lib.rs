//! What the fuzz targets share: a real [`App`] on the in-memory store, with
//! one user, one cookie session and one token session, so that a target can
//! reach the paths behind a valid credential.

use std::sync::{Arc, LazyLock};

use tessera_core::session::ClientInfo;
use tessera_server::accounts::{Attempt, Delivery, Registrar};
use tessera_server::app::{AppState, Stores};
use tessera_server::keys::Keys;
use tessera_server::settings::{Settings, SettingsArgs};
use tessera_store::MemoryStore;
use time::OffsetDateTime;

/// A fixed "now" (2026-11-22T18:00:00Z), so every run sees the same clock.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_370_400).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The one app every run uses, and the credentials it issued.
pub struct Fixture {
    /// The application state, as the router holds it.
    pub app: AppState,
    /// A current-thread runtime to drive the async code.
    pub rt: tokio::runtime::Runtime,
    /// The cookie session's secret (`tsr_ss_…`).
    pub session_secret: String,
    /// Its CSRF token.
    pub csrf: String,
    /// A valid access token (EdDSA, signed by the app's current key).
    pub access_token: String,
    /// A valid, unspent refresh token.
    pub refresh_token: String,
}

/// Builds the fixture once per process.
pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let settings = Settings::resolve(SettingsArgs {
        // Varied like a generated key: a predictable one is refused.
        master_key: Some(
            "5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a".to_owned(),
        ),
        insecure_dev_cookies: Some(true),
        ..SettingsArgs::default()
    })
    .expect("valid settings");
    let store = Arc::new(MemoryStore::new());
    let stores = Stores {
        users: store.clone(),
        sessions: store.clone(),
        users_uncached: store.clone(),
        sessions_uncached: store.clone(),
        feed: Arc::new(tessera_store::LocalFeed),
        throttle: store.clone(),
        refresh: store.clone(),
        keys: store.clone(),
        health: vec![("database", store.clone())],
    };
    let fixture = rt.block_on(async move {
        let now = now();
        let keys = Keys::open(stores.keys.clone(), &settings, now)
            .await
            .expect("keys");
        let app = tessera_server::app::App::new(settings, stores, keys, None).expect("the app");
        let password = "correct horse battery staple";
        let attempt = || Attempt {
            username: "fuzz_user",
            password,
            client: ClientInfo::default(),
            device: None,
        };
        app.accounts
            .register(
                "fuzz_user",
                password,
                Registrar::Public,
                &ClientInfo::default(),
                now,
            )
            .await
            .expect("registering");
        let login = app
            .accounts
            .log_in(attempt(), now)
            .await
            .expect("a session login");
        let grant = app
            .tokens
            .log_in(attempt(), Delivery::Body, now)
            .await
            .expect("a token login");
        (
            app,
            tessera_core::csrf::token_for(&login.secret),
            login.secret.expose().to_owned(),
            grant.access_token,
            grant.refresh_token.expose().to_owned(),
        )
    });
    let (app, csrf, session_secret, access_token, refresh_token) = fixture;
    Fixture {
        app,
        rt,
        session_secret,
        csrf,
        access_token,
        refresh_token,
    }
});

/// `input` with the placeholders `$S` (the session secret), `$C` (its CSRF
/// token), `$T` (the access token) and `$R` (the refresh token) replaced, so
/// the fuzzer can combine valid credentials with anything else.
pub fn expand(input: &str, f: &Fixture) -> String {
    input
        .replace("$S", &f.session_secret)
        .replace("$C", &f.csrf)
        .replace("$T", &f.access_token)
        .replace("$R", &f.refresh_token)
}
