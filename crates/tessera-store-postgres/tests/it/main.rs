//! The conformance suite on PostgreSQL, each test in a schema of its own,
//! dropped afterwards. Reads `TESSERA_TEST_DATABASE_URL`; skipped, and counted
//! as skipped by `scripts/test`, when it is unset (CI fails instead).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tessera_store_postgres::{PoolOptions, PostgresStore};

/// A store in a new schema of the test database, or `None` when no test
/// database is configured.
async fn fresh() -> Option<Arc<PostgresStore>> {
    let [url] = <[String; 1]>::try_from(tessera_store::conformance::backend_urls(
        &["TESSERA_TEST_DATABASE_URL"],
        &tessera_store::conformance::current_test(),
    )?)
    .ok()?;
    static N: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "tessera_conf_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Some(Arc::new(
        PostgresStore::open(&url, Some(&schema), PoolOptions::default())
            .await
            .unwrap(),
    ))
}

async fn drop_schema(store: Arc<PostgresStore>) {
    store.drop_schema().await.unwrap();
}

tessera_store::conformance_tests!(fresh(), drop_schema);

#[tokio::test]
async fn an_unreachable_database_is_an_open_error_quickly() {
    let started = std::time::Instant::now();
    let err = PostgresStore::open(
        "postgres://nobody@127.0.0.1:1/none",
        None,
        PoolOptions {
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_secs(2),
        },
    )
    .await
    .err();
    assert!(
        matches!(err, Some(tessera_store_postgres::OpenError::Open(_))),
        "{err:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
