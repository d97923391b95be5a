//! Helpers shared by the integration tests: loopback proxies, a test CA, and a minimal
//! Feishu stand-in. Each test binary uses a subset, hence the dead-code allowance.
#![allow(dead_code)]

pub mod certs;
pub mod feishu;
pub mod proxies;

/// Polls `cond` until it holds; panics after `ms` milliseconds. Tests wait for
/// conditions, never for fixed times.
pub async fn wait_for(what: &str, ms: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {ms} ms waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
