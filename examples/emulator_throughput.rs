//! How many small events per second the emulator can push through one connection to a
//! minimal Rust client that acks at once. The emulator must not be the bottleneck of
//! the transport's benchmarks, so this measures it alone.
//!
//!     cargo run --release --example emulator_throughput [-- COUNT [PAYLOAD_BYTES [MAX_IN_FLIGHT]]]
//!
//! Defaults: 200 000 events of 512 bytes, at most 20 000 unacked at a time.

use std::time::{Duration, Instant};

use feishu_transport::core::frame::{AckPayload, Frame, Header, METHOD_DATA};
use feishu_transport::emulator::{
    Emulator, EmulatorOptions, PushManyOptions, DEFAULT_APP_ID, DEFAULT_APP_SECRET,
};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

mod support;

/// Connects and acks every complete event with `{"code":200}` at once. Acks go through
/// a channel to a writer that feeds while acks are ready and flushes once.
async fn run_client(url: String) {
    let ws = support::connect(&url).await;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(Message::Binary(first.into())).await.is_err() {
                return;
            }
            while let Ok(next) = rx.try_recv() {
                if sink.feed(Message::Binary(next.into())).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    // Fragments of unfinished events, by message id.
    let mut partial: std::collections::HashMap<String, Vec<Option<Vec<u8>>>> =
        std::collections::HashMap::new();
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Binary(bytes) = msg else {
            continue;
        };
        let Ok(frame) = Frame::decode_bytes(&bytes) else {
            continue;
        };
        if frame.method != METHOD_DATA {
            continue;
        }
        let sum: usize = frame
            .header("sum")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        if sum > 1 {
            let seq: usize = frame
                .header("seq")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let id = frame.header("message_id").unwrap_or("").to_string();
            let slots = partial.entry(id.clone()).or_insert_with(|| vec![None; sum]);
            if seq < slots.len() {
                slots[seq] = frame.payload.clone();
            }
            if !slots.iter().all(Option::is_some) {
                continue;
            }
            partial.remove(&id);
        }
        // The ack is the completing frame echoed back with biz_rt and the response
        // (what Frame::ack builds), made in place instead of cloning the headers.
        let mut ack = frame;
        ack.headers.push(Header {
            key: "biz_rt".into(),
            value: "0".into(),
        });
        ack.payload = Some(AckPayload::Ok.to_json());
        let ack = ack.encode_to_vec();
        if tx.send(ack).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat; None off
/// Linux. Wall-clock rates depend on what else runs on a shared machine, CPU per event
/// much less so.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and
    // 15th fields overall, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count = arg(1, 200_000);
    let payload_bytes = arg(2, 512);
    let max_in_flight = arg(3, 20_000);

    let emu = Emulator::start(EmulatorOptions {
        // Long enough that a slow run measures throughput, not re-deliveries.
        ack_deadline: Duration::from_secs(60),
        ..EmulatorOptions::default()
    })
    .await
    .expect("emulator");
    let url = support::discover(
        &format!("127.0.0.1:{}", emu.port()),
        DEFAULT_APP_ID,
        DEFAULT_APP_SECRET,
    )
    .await;
    let client = tokio::spawn(run_client(url));
    emu.wait_for_connections(None, 1, Duration::from_secs(10))
        .await
        .expect("a connection");

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    emu.push_many(PushManyOptions {
        count,
        payload_bytes,
        max_in_flight: Some(max_in_flight),
        ..PushManyOptions::default()
    })
    .await;
    let pushed = t0.elapsed();
    emu.wait_for_all_acked(Duration::from_secs(300))
        .await
        .expect("every event acked");
    let elapsed = t0.elapsed();
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) => format!(
            "; CPU (emulator + client) {:.1} us per event",
            (b - a) * 1e6 / count as f64
        ),
        _ => String::new(),
    };

    let stats = emu.stats();
    let mut lat: Vec<u64> = emu.acks().iter().map(|a| a.latency_us).collect();
    lat.sort_unstable();
    println!(
        "{count} events of {payload_bytes} B, max {max_in_flight} in flight: {:.0} events/s \
         (pushed in {:.3} s, all acked in {:.3} s); ack latency p50 {} us, p99 {} us; \
         redeliveries {}{cpu}",
        count as f64 / elapsed.as_secs_f64(),
        pushed.as_secs_f64(),
        elapsed.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        stats.redeliveries,
    );
    emu.close().await;
    let _ = client.await;
}
