//! The tessera HTTP server: the axum router and handlers of `docs/api.md`,
//! cookies, CSRF, settings, metrics, and the `tessera` command.
//!
//! [`router::router`] builds the whole application from an [`app::AppState`],
//! so tests can serve it without `main`; [`serve::serve`] is what `tessera
//! serve` runs. Only this crate speaks HTTP and JSON: the rules live in
//! `tessera-core`, storage behind the traits of `tessera-store`.

pub mod access_log;
pub mod accounts;
pub mod app;
pub mod auth;
pub mod auth_cache;
pub mod cli;
pub mod cli_keys;
pub mod cookies;
pub mod entry;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod keys;
pub mod listener;
pub mod openapi;
pub mod origin;
pub mod pages;
pub mod passwords;
pub mod router;
pub mod serve;
pub mod settings;
pub mod store_metrics;
pub mod telemetry;
pub mod token_cache;
