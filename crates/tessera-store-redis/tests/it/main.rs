//! The conformance suite (sessions, refresh tokens, failure counters) on
//! Redis, each test under a key prefix of its own, deleted afterwards. Reads
//! `TESSERA_TEST_REDIS_URL`; skipped, loudly, when it is unset (`.ci/run`
//! always sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tessera_store_redis::RedisStore;

async fn fresh() -> Option<Arc<RedisStore>> {
    let Ok(url) = std::env::var("TESSERA_TEST_REDIS_URL") else {
        eprintln!(
            "\n*** SKIPPED: TESSERA_TEST_REDIS_URL is not set; Redis conformance NOT checked ***\n"
        );
        return None;
    };
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
