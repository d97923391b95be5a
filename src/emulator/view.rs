//! What the emulator reads of the frames clients send (pings and acks): the fields, and
//! the first `type`, `message_id` and `biz_rt` headers, as `Bytes` of the received
//! message.
//!
//! The frame is read by the core's decoder (`FrameView::decode_into` in
//! src/core/frame_view.rs, prost's rules, held to prost by tests/codec_props.rs) with a
//! [`HeaderSink`] that keeps only those three headers: acks arrive at 100 000 a second
//! in the benchmark, and neither a vector of headers nor an owned string per header is
//! built for them.

use bytes::Bytes;

use crate::core::frame::{header_key, DecodeError};
use crate::core::frame_view::{FrameView, HeaderSink, HeaderView};

/// What the emulator reads from a client's frame: the fields, and the first `type`,
/// `message_id` and `biz_rt` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadFields {
    pub(crate) seq_id: u64,
    pub(crate) log_id: u64,
    pub(crate) service: i32,
    pub(crate) method: i32,
    pub(crate) kind: Option<Bytes>,
    pub(crate) message_id: Option<Bytes>,
    pub(crate) biz_rt: Option<Bytes>,
    /// Empty when absent.
    pub(crate) payload: Bytes,
}

/// The first `type`, `message_id` and `biz_rt` headers of a frame.
#[derive(Default)]
struct Picked<'a> {
    kind: Option<&'a str>,
    message_id: Option<&'a str>,
    biz_rt: Option<&'a str>,
}

impl<'a> HeaderSink<'a> for Picked<'a> {
    fn push(&mut self, h: HeaderView<'a>) {
        let slot = if h.key == header_key::TYPE.as_bytes() {
            &mut self.kind
        } else if h.key == header_key::MESSAGE_ID.as_bytes() {
            &mut self.message_id
        } else if h.key == header_key::BIZ_RT.as_bytes() {
            &mut self.biz_rt
        } else {
            return;
        };
        if slot.is_none() {
            *slot = Some(h.value);
        }
    }
}

impl ReadFields {
    /// Reads a received message; the error of a bad frame is the core's (prost's words).
    pub(crate) fn read(bytes: &Bytes) -> Result<ReadFields, DecodeError> {
        let view = FrameView::decode_into(bytes, Picked::default())?;
        let slice = |s: Option<&str>| s.map(|s| bytes.slice_ref(s.as_bytes()));
        Ok(ReadFields {
            seq_id: view.seq_id,
            log_id: view.log_id,
            service: view.service,
            method: view.method,
            kind: slice(view.headers.kind),
            message_id: slice(view.headers.message_id),
            biz_rt: slice(view.headers.biz_rt),
            payload: view.payload.map_or_else(Bytes::new, |p| bytes.slice_ref(p)),
        })
    }
}

/// A header value as text (validated UTF-8 by `read`).
pub(crate) fn text(value: &Option<Bytes>) -> Option<&str> {
    value.as_deref().and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::{AckPayload, Frame, Header, METHOD_DATA};
    use prost::Message as _;

    fn sample() -> Frame {
        let received = Frame {
            seq_id: 17,
            log_id: 42,
            service: -5,
            method: METHOD_DATA,
            headers: vec![
                Header {
                    key: "type".into(),
                    value: "event".into(),
                },
                Header {
                    key: "message_id".into(),
                    value: "m-1".into(),
                },
                Header {
                    key: "empty".into(),
                    value: "".into(),
                },
                // Only the first of a key counts.
                Header {
                    key: "message_id".into(),
                    value: "m-2".into(),
                },
            ],
            payload_encoding: Some("enc".into()),
            payload_type: None,
            payload: Some(b"x".to_vec()),
            log_id_new: Some("n".into()),
        };
        Frame::ack(&received, 3, &AckPayload::Ok)
    }

    #[test]
    fn reads_what_the_codec_writes() {
        for frame in [sample(), Frame::ping(33554678), Frame::default()] {
            let bytes = Bytes::from(frame.encode_to_vec());
            let read = ReadFields::read(&bytes).unwrap();
            assert_eq!(
                (read.seq_id, read.log_id, read.service, read.method),
                (frame.seq_id, frame.log_id, frame.service, frame.method)
            );
            assert_eq!(text(&read.kind), frame.header("type"));
            assert_eq!(text(&read.message_id), frame.header("message_id"));
            assert_eq!(text(&read.biz_rt), frame.header("biz_rt"));
            assert_eq!(
                &read.payload[..],
                frame.payload.as_deref().unwrap_or_default()
            );
        }
        assert_eq!(
            text(
                &ReadFields::read(&Bytes::from(sample().encode_to_vec()))
                    .unwrap()
                    .message_id
            ),
            Some("m-1")
        );
    }

    #[test]
    fn rejects_what_the_codec_rejects() {
        let good = sample().encode_to_vec();
        for cut in 1..good.len() {
            let ours = ReadFields::read(&Bytes::copy_from_slice(&good[..cut])).map(|_| ());
            let codec = Frame::decode_bytes(&good[..cut]).map(|_| ());
            assert_eq!(ours, codec, "prefix of {cut} bytes");
        }
        // a header value that is not UTF-8: field 5 { key "k", value 0xff }
        let bad = [0x2a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, 0xff];
        assert!(Frame::decode_bytes(&bad).is_err());
        assert!(ReadFields::read(&Bytes::copy_from_slice(&bad)).is_err());
        // wrong wire type for field 1
        assert!(ReadFields::read(&Bytes::from_static(&[0x0a, 0x01, 0x00])).is_err());
    }
}
