//! Stopping the transports of a JavaScript environment that goes away (a worker terminated
//! mid-run), so nothing calls into a dead environment.
//!
//! One cleanup hook per environment, registered with its first transport, holds that
//! environment's live transports; a transport leaves the list when JavaScript collects
//! it. A hook per transport, as before, was never removed: napi-rs leaks the hook's data
//! even when it is removed, so 10 000 short-lived transports kept 10 000 hooks and their
//! allocations until the environment ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::core::supervisor::Transport;

/// The live transports of one environment, by registration id.
#[derive(Default)]
struct EnvTransports {
    next_id: u64,
    live: HashMap<u64, Weak<Transport>>,
}

/// Every environment's list, keyed by its `napi_env` address (unique while it lives; the
/// hook removes the entry as the environment ends).
static ENVS: Mutex<Option<HashMap<usize, EnvTransports>>> = Mutex::new(None);
/// Cleanup hooks registered and not yet run (one per environment that made a transport).
static HOOKS: AtomicUsize = AtomicUsize::new(0);

fn envs() -> std::sync::MutexGuard<'static, Option<HashMap<usize, EnvTransports>>> {
    ENVS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A transport's place in its environment's list; leaving it on drop.
pub struct Registration {
    env: usize,
    id: u64,
}

/// Adds `transport` to the list of `env`, registering the environment's hook the first
/// time.
pub fn register(env: &Env, transport: Weak<Transport>) -> Registration {
    let key = env.raw() as usize;
    let mut guard = envs();
    let map = guard.get_or_insert_with(HashMap::new);
    let list = map.entry(key).or_insert_with(|| {
        if env.add_env_cleanup_hook(key, stop_all).is_ok() {
            HOOKS.fetch_add(1, Ordering::Relaxed);
        }
        EnvTransports::default()
    });
    let id = list.next_id;
    list.next_id += 1;
    list.live.insert(id, transport);
    Registration { env: key, id }
}

/// The environment `key` is going away: stop every run it still has.
fn stop_all(key: usize) {
    HOOKS.fetch_sub(1, Ordering::Relaxed);
    let list = envs().as_mut().and_then(|m| m.remove(&key));
    for t in list.into_iter().flat_map(|l| l.live.into_values()) {
        if let Some(t) = t.upgrade() {
            napi::bindgen_prelude::spawn(t.close(true, Some(Duration::ZERO)));
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(list) = envs().as_mut().and_then(|m| m.get_mut(&self.env)) {
            list.live.remove(&self.id);
        }
    }
}

/// For the test suite: cleanup hooks registered and transports listed in them, across
/// environments.
#[napi(object)]
pub struct CleanupStats {
    pub hooks: u32,
    pub transports: u32,
}

/// See [`CleanupStats`]. Not part of the public API.
#[napi(js_name = "__cleanupStats")]
pub fn cleanup_stats() -> CleanupStats {
    let transports = envs()
        .as_ref()
        .map_or(0, |m| m.values().map(|l| l.live.len()).sum::<usize>());
    CleanupStats {
        hooks: HOOKS.load(Ordering::Relaxed) as u32,
        transports: transports as u32,
    }
}

/// For the test suite: makes the next run panic as it starts, when the process runs with
/// `FEISHU_TRANSPORT_TEST_FAULTS=1`; returns whether it was armed. Not part of the public
/// API.
#[napi(js_name = "__testPanicNextRun")]
pub fn test_panic_next_run() -> bool {
    crate::core::faults::arm_panic_next_run()
}
