//! Property tests of the pbbp2 codec: whatever arrives off the socket, decoding returns
//! instead of panicking, and what we encode decodes back to the same frame.
//!
//! Case counts default high (10 000) because each case costs microseconds; set
//! `PROPTEST_CASES` to change them.

use feishu_transport::core::frame::{AckPayload, Frame, Header};
use feishu_transport::core::frame_view::{
    encode_head, encoded_len, AckTemplate, FrameIds, FrameView, Headers, MAX_HEADERS,
    MAX_HEADER_BYTES,
};
use proptest::prelude::*;
use prost::Message;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn header() -> impl Strategy<Value = Header> {
    let text = prop_oneof![
        Just(String::new()),
        "[a-z_]{1,12}",
        any::<String>(),
        "\\PC{0,16}",
    ];
    (text.clone(), text).prop_map(|(key, value)| Header { key, value })
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![any::<i32>(), Just(-1), Just(i32::MIN), Just(33554678)],
        any::<i32>(),
        proptest::collection::vec(header(), 0..8),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
        proptest::option::of(any::<String>()),
    )
        .prop_map(
            |(
                seq_id,
                log_id,
                service,
                method,
                headers,
                payload_encoding,
                payload_type,
                payload,
                log_id_new,
            )| Frame {
                seq_id,
                log_id,
                service,
                method,
                headers,
                payload_encoding,
                payload_type,
                payload,
                log_id_new,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(10_000), ..ProptestConfig::default() })]

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Frame::decode_bytes(&bytes);
    }

    /// Random bytes rarely get past the first tag; corrupting a real frame reaches the
    /// nested header and length-prefix paths.
    #[test]
    fn decoding_corrupted_frames_never_panics(
        f in frame(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = f.encode_to_vec();
        if !bytes.is_empty() {
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = Frame::decode_bytes(&bytes);
    }

    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        let bytes = f.encode_to_vec();
        prop_assert_eq!(Frame::decode_bytes(&bytes), Ok(f));
    }

    /// The zero-copy view accepts exactly what the owned decoder accepts, reads the same
    /// headers and payload, and its ack template writes the same bytes as `Frame::ack`.
    #[test]
    fn the_view_and_its_acks_agree_with_the_frame(
        f in frame(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        biz_rt in any::<u64>(),
        data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    ) {
        let mut bytes = f.encode_to_vec();
        if !bytes.is_empty() {
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
        }
        let owned = Frame::decode_bytes(&bytes);
        let view = FrameView::decode(&bytes);
        match (owned, view) {
            (Ok(o), Ok(v)) => {
                prop_assert_eq!(o.payload.as_deref(), v.payload);
                prop_assert_eq!(o.headers.len(), v.headers.len());
                for h in &o.headers {
                    prop_assert_eq!(Frame::header(&o, &h.key), v.header(&h.key));
                }
                let response = match data {
                    Some(d) => AckPayload::OkWithData(d),
                    None => AckPayload::Ok,
                };
                let t = AckTemplate::new(&v);
                prop_assert_eq!(t.message_id(), Frame::header(&o, "message_id").unwrap_or(""));
                prop_assert_eq!(t.encode(biz_rt, &response), Frame::ack(&o, biz_rt, &response).encode_to_vec());
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "owned {:?} vs view {:?} bytes {:02x?}", a.err(), b.is_ok(), bytes),
        }
    }

    /// The encoder the emulator writes its data frames with (any frame of fields 1–5 and
    /// 8) writes prost's bytes, at the length it promised.
    #[test]
    fn the_head_encoder_writes_what_the_frame_writes(f in frame()) {
        let f = Frame { payload_encoding: None, payload_type: None, log_id_new: None, ..f };
        let ids = FrameIds { seq_id: f.seq_id, log_id: f.log_id, service: f.service, method: f.method };
        let headers: Vec<(&str, &str)> =
            f.headers.iter().map(|h| (h.key.as_str(), h.value.as_str())).collect();
        let len = f.payload.as_ref().map(Vec::len);
        let mut ours = Vec::new();
        encode_head(&ids, &headers, len, &mut ours);
        ours.extend_from_slice(f.payload.as_deref().unwrap_or_default());
        prop_assert_eq!(ours.len(), encoded_len(&ids, &headers, len));
        prop_assert_eq!(ours, f.encode_to_vec());
    }

}

proptest! {
    // Each case encodes a frame of about 256 headers: fewer cases.
    #![proptest_config(ProptestConfig { cases: cases(500), ..ProptestConfig::default() })]

    /// A frame within the header bounds decodes as prost decodes it; one past either
    /// bound (count or bytes) is refused, whatever else it holds.
    #[test]
    fn the_header_bounds_hold(
        f in frame(),
        count in (MAX_HEADERS - 3)..(MAX_HEADERS + 4),
        value_len in prop_oneof![Just(0usize), 0..300usize],
        front in any::<bool>(),
    ) {
        let mut f = f;
        let filler: Vec<Header> = (0..count)
            .map(|i| Header { key: if i % 2 == 0 { String::new() } else { "k".into() }, value: "v".repeat(value_len) })
            .collect();
        if front {
            f.headers.splice(0..0, filler);
        } else {
            f.headers.extend(filler);
        }
        let bytes = f.encode_to_vec();
        // What the bound counts: each header field's key byte, length and bytes.
        let header_bytes: usize = f.headers.iter().map(|h| {
            let len = h.encoded_len();
            1 + prost::encoding::encoded_len_varint(len as u64) + len
        }).sum();
        let within = f.headers.len() <= MAX_HEADERS && header_bytes <= MAX_HEADER_BYTES;
        match FrameView::decode(&bytes) {
            Ok(v) => {
                prop_assert!(within, "{} headers, {} bytes accepted", f.headers.len(), header_bytes);
                prop_assert_eq!(v.headers.len(), f.headers.len());
            }
            Err(e) => {
                prop_assert!(!within, "refused within the bounds: {:?}", e);
                prop_assert!(e.0.contains("headers"), "{:?}", e);
            }
        }
    }
}
