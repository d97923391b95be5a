//! The core's per-event path in isolation, one 512 B event at a time, as the session runs
//! it (`src/core/connection.rs` `on_event_frame` and `dispatch`, then the ack of
//! `InFlight::settle`): frame decode → fragment assembler (a whole message passes
//! through) → UTF-8 check → envelope scan → ack template → dedupe claim → dedupe success →
//! ack encode. No socket, no thread hand-off, no JavaScript.
//!
//!     cargo bench --bench per_event
//!
//! Time per event from divan; for instruction counts, which this shared machine does not
//! disturb, run the built bench under callgrind (bench/NOTES.md, "Rust micro-benchmark").
//! Dedupe sees a new event id every time and, past its 10 000 remembered results, forgets
//! the oldest one per event, as on a long-running bot.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use feishu_transport::core::dedupe::{Begin, Dedupe, DedupeConfig};
use feishu_transport::core::envelope::envelope_meta;
use feishu_transport::core::fragments::{Assembler, FragmentLimits};
use feishu_transport::core::frame::{header_key, AckPayload, Frame, Header, METHOD_DATA};
use feishu_transport::core::frame_view::{AckTemplate, FrameView};
use prost::Message as _;

fn main() {
    divan::main();
}

/// Twice dedupe's default capacity, so an id comes round again only after it was forgotten.
const FRAMES: usize = 20_000;

/// An event frame as Feishu sends one: the usual headers and a 512 B v2 envelope.
fn event_frame(i: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"schema":"2.0","header":{{"event_id":"{i:032x}","event_type":"im.message.receive_v1","create_time":"1764380000000","token":"t","app_id":"cli_b0e1c2d3e4f5a610","tenant_key":"k"}},"event":{{"message":{{"message_id":"om_{i}","chat_id":"oc_x","message_type":"text","content":""#
    );
    let payload = format!("{head}{}\"}}}}}}", "x".repeat(512 - head.len() - 4));
    let header = |k: &str, v: String| Header {
        key: k.into(),
        value: v,
    };
    Frame {
        seq_id: i as u64,
        log_id: i as u64,
        service: 1,
        method: METHOD_DATA,
        headers: vec![
            header(header_key::TYPE, "event".into()),
            header(header_key::MESSAGE_ID, format!("om_emu0000{i:016x}")),
            header(header_key::SUM, "1".into()),
            header(header_key::SEQ, "0".into()),
            header(header_key::TRACE_ID, format!("trace{i:027}")),
        ],
        payload_encoding: None,
        payload_type: None,
        payload: Some(payload.into_bytes()),
        log_id_new: None,
    }
    .encode_to_vec()
}

/// One event through the core, returning the ack's length (so nothing is optimised away).
fn one_event(bytes: &[u8], assembler: &mut Assembler, dedupe: &Dedupe<AckPayload>) -> usize {
    let frame = FrameView::decode(bytes).expect("frame");
    let now = Instant::now();
    let complete = assembler
        .push(&frame, frame.payload.unwrap_or_default(), now)
        .expect("valid")
        .expect("whole");
    let payload = std::str::from_utf8(&complete.payload).expect("UTF-8");
    let meta = envelope_meta(payload).expect("envelope");
    let ack = AckTemplate::new(&frame);
    let key = meta.event_id.as_deref().expect("event id");
    match dedupe.begin(key, now) {
        Begin::Run(guard) => guard.succeed(AckPayload::Ok, now),
        _ => panic!("every event is new"),
    }
    ack.encode(0, &AckPayload::Ok).len()
}

#[divan::bench]
fn frame_to_ack(bencher: divan::Bencher) {
    let frames: Vec<Vec<u8>> = (0..FRAMES).map(event_frame).collect();
    let assembler = RefCell::new(Assembler::new(FragmentLimits::default()));
    let dedupe = Dedupe::new(DedupeConfig::default());
    let next = Cell::new(0usize);
    // Dedupe filled to its steady state first: every later event also forgets the oldest.
    for f in &frames[..FRAMES / 2] {
        one_event(f, &mut assembler.borrow_mut(), &dedupe);
    }
    next.set(FRAMES / 2);
    bencher.bench_local(|| {
        let i = next.get();
        next.set((i + 1) % FRAMES);
        one_event(&frames[i], &mut assembler.borrow_mut(), &dedupe)
    });
}

#[divan::bench]
fn decode_only(bencher: divan::Bencher) {
    let frame = event_frame(1);
    bencher.bench_local(|| FrameView::decode(divan::black_box(&frame)).map(|f| f.headers.len()));
}

#[divan::bench]
fn envelope_only(bencher: divan::Bencher) {
    let frame = Frame::decode_bytes(&event_frame(1)).expect("frame");
    let payload = String::from_utf8(frame.payload.expect("payload")).expect("UTF-8");
    bencher.bench_local(|| envelope_meta(divan::black_box(&payload)).map(|m| m.event_id.is_some()));
}
