//! The conformance suite (sessions, refresh tokens, failure counters) on
//! Redis, each test under a key prefix of its own, deleted afterwards. Reads
//! `TESSERA_TEST_REDIS_URL`; skipped, and counted as skipped by `scripts/test`,
//! when it is unset (CI fails instead).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tessera_store_redis::RedisStore;

async fn fresh() -> Option<Arc<RedisStore>> {
    let [url] = <[String; 1]>::try_from(tessera_store::conformance::backend_urls(
        &["TESSERA_TEST_REDIS_URL"],
        &tessera_store::conformance::current_test(),
    )?)
    .ok()?;
    static N: AtomicU32 = AtomicU32::new(0);
    let prefix = format!(
        "tessera-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Some(Arc::new(RedisStore::open(&url, &prefix).await.unwrap()))
}

async fn delete_all(store: Arc<RedisStore>) {
    store.delete_all().await.unwrap();
}

tessera_store::conformance_tests!(ephemeral: fresh(), delete_all);

#[tokio::test]
async fn an_unreachable_redis_is_an_open_error_quickly() {
    let started = std::time::Instant::now();
    assert!(RedisStore::open("redis://127.0.0.1:1", "x").await.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
