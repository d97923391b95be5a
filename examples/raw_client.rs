//! The benchmark's floor: the least a Rust client can do per event. Discovery, one
//! socket on a current-thread tokio runtime, and every event acked `{"code":200}` the
//! moment it is read, with the crate's codec (`FrameView`, `AckTemplate`). No JavaScript,
//! no dedupe, no fragments (the steady-rate scenarios send whole events). Not part of
//! the addon: `cargo build --release --example raw_client`.
//!
//!     raw_client --domain http://127.0.0.1:PORT --app APP_ID:SECRET
//!
//! It prints `{"ready":true,"connectMs":…}` once connected, then answers lines on stdin,
//! as `bench/client.mjs` does over IPC: `begin` → `{}`, `end` → `{cpuMs, wallMs,
//! handled, rssBytes, peakRssBytes}` since the last begin, `exit`. The commands are
//! served by a thread of their own, so the socket's thread wakes for nothing else; CPU
//! is every thread's on-CPU time (`/proc/self/task/*/schedstat`, nanoseconds).

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use feishu_transport::core::frame::{frame_type, AckPayload, METHOD_DATA};
use feishu_transport::core::frame_view::{AckTemplate, FrameView};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

mod support;

fn arg(name: &str) -> String {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args.next().unwrap_or_default();
        }
    }
    panic!("{name} is required")
}

/// On-CPU nanoseconds of every thread of this process.
fn cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Serves `begin`/`end`/`exit` from stdin, off the socket's thread.
fn serve_commands(handled: Arc<AtomicU64>) {
    let (mut cpu0, mut wall0, mut handled0) = (cpu_ns(), Instant::now(), 0);
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let reply = match line.as_deref().map(str::trim) {
            Ok("begin") => {
                (cpu0, wall0, handled0) =
                    (cpu_ns(), Instant::now(), handled.load(Ordering::Relaxed));
                "{}".to_string()
            }
            Ok("end") => serde_json::json!({
                "cpuMs": (cpu_ns() - cpu0) as f64 / 1e6,
                "wallMs": wall0.elapsed().as_secs_f64() * 1e3,
                "handled": handled.load(Ordering::Relaxed) - handled0,
                "rssBytes": status_kb("VmRSS") * 1024,
                "peakRssBytes": status_kb("VmHWM") * 1024,
            })
            .to_string(),
            _ => std::process::exit(0),
        };
        let _ = writeln!(out, "{reply}");
    }
    std::process::exit(0);
}

fn main() {
    let domain = arg("--domain");
    let (app_id, secret) = arg("--app")
        .split_once(':')
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .expect("--app ID:SECRET");
    let authority = domain
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let handled = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t0 = Instant::now();
        let url = support::discover(&authority, &app_id, &secret).await;
        let ws = support::connect(&url).await;
        println!(
            "{}",
            serde_json::json!({ "ready": true, "connectMs": t0.elapsed().as_secs_f64() * 1e3 })
        );
        let counter = handled.clone();
        std::thread::spawn(move || serve_commands(counter));
        let (mut sink, mut stream) = ws.split();
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Binary(bytes) = msg else {
                continue;
            };
            let Ok(frame) = FrameView::decode(&bytes) else {
                continue;
            };
            if frame.method != METHOD_DATA || frame.frame_type() != frame_type::EVENT {
                continue;
            }
            let ack = AckTemplate::new(&frame).encode(0, &AckPayload::Ok);
            // One write per event: at a steady rate every read holds one event.
            if sink.send(Message::Binary(ack.into())).await.is_err() {
                break;
            }
            handled.fetch_add(1, Ordering::Relaxed);
        }
    });
}
