//! Faults the test suite injects into a built addon, to prove what the transport does when
//! its own code fails. Armed only when the process runs with
//! `FEISHU_TRANSPORT_TEST_FAULTS=1`, so nothing in production can trip them.

use std::sync::atomic::{AtomicBool, Ordering};

static PANIC_NEXT_RUN: AtomicBool = AtomicBool::new(false);

/// Whether faults may be armed in this process.
fn enabled() -> bool {
    std::env::var_os("FEISHU_TRANSPORT_TEST_FAULTS").is_some_and(|v| v == "1")
}

/// Makes the next run panic as it starts. Returns false (and arms nothing) unless the
/// process allows test faults.
pub fn arm_panic_next_run() -> bool {
    if !enabled() {
        return false;
    }
    PANIC_NEXT_RUN.store(true, Ordering::SeqCst);
    true
}

/// Called by every run as it starts.
pub(crate) fn maybe_panic_in_run() {
    if PANIC_NEXT_RUN.swap(false, Ordering::SeqCst) {
        panic!("test fault: a panic inside the run");
    }
}
