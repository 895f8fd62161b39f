//! End-to-end tests: the real `tessera` binary on 127.0.0.1:0, spoken to over
//! real HTTP. One binary with modules, to keep link time down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod abuse;
mod accounts;
mod api_doc;
mod axum_crate;
mod browser;
mod cache;
mod cli;
mod common;
mod crash;
mod express;
mod forged;
mod interop;
mod metrics;
mod oauth;
mod outage;
mod pages;
mod proxies;
mod scale;
mod schemathesis;
mod sessions;
mod setup_errors;
mod slow_clients;
mod stray_state;
mod support;
mod tokens;
