//! A zero-copy reading of the frames clients send (pings and acks).
//!
//! Decoding an ack into `core::frame::Frame` allocates a string for every header key and
//! value; at 100 000 acks per second that was most of the emulator's reading cost. This
//! view declares the same pbbp2 fields (PROTOCOL.md §4) with `Bytes` for headers and
//! payload, so prost slices them out of the received message instead of copying. A unit
//! test checks that it reads exactly what `Frame` encodes and rejects what `Frame`
//! rejects, so the two cannot drift apart unnoticed.

use bytes::Bytes;

use crate::core::frame::DecodeError;

/// `pbbp2.Frame` with borrowed headers and payload.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct FrameView {
    #[prost(uint64, tag = "1")]
    pub(crate) seq_id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) log_id: u64,
    #[prost(int32, tag = "3")]
    pub(crate) service: i32,
    #[prost(int32, tag = "4")]
    pub(crate) method: i32,
    #[prost(message, repeated, tag = "5")]
    pub(crate) headers: Vec<HeaderView>,
    // 6, 7 and 9 are strings nobody reads; declared so that they are UTF-8-checked as
    // `Frame` checks them (they are absent from real acks, so this costs nothing).
    #[prost(string, optional, tag = "6")]
    payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    payload_type: Option<String>,
    #[prost(bytes = "bytes", optional, tag = "8")]
    pub(crate) payload: Option<Bytes>,
    #[prost(string, optional, tag = "9")]
    log_id_new: Option<String>,
}

/// `pbbp2.Header` with borrowed key and value.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HeaderView {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) value: Bytes,
}

impl FrameView {
    /// Decodes a received message. Errors where `Frame::decode_bytes` errors, including
    /// header strings that are not UTF-8.
    pub(crate) fn decode_bytes(bytes: Bytes) -> Result<FrameView, DecodeError> {
        use prost::Message as _;
        let view = FrameView::decode(bytes).map_err(|e| DecodeError(e.to_string()))?;
        for h in &view.headers {
            if std::str::from_utf8(&h.key).is_err() || std::str::from_utf8(&h.value).is_err() {
                return Err(DecodeError("header is not UTF-8".into()));
            }
        }
        Ok(view)
    }

    /// The first value of header `key` (validated UTF-8 by `decode_bytes`).
    pub(crate) fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key.as_bytes())
            .and_then(|h| std::str::from_utf8(&h.value).ok())
    }
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
            let view = FrameView::decode_bytes(bytes).unwrap();
            assert_eq!(
                (view.seq_id, view.log_id, view.service, view.method),
                (frame.seq_id, frame.log_id, frame.service, frame.method)
            );
            let headers: Vec<(String, String)> = view
                .headers
                .iter()
                .map(|h| {
                    (
                        String::from_utf8(h.key.to_vec()).unwrap(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect();
            let expected: Vec<(String, String)> = frame
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            assert_eq!(headers, expected);
            assert_eq!(view.payload.as_deref(), frame.payload.as_deref());
            assert_eq!(view.header("message_id"), frame.header("message_id"));
        }
    }

    #[test]
    fn rejects_what_the_codec_rejects() {
        let good = sample().encode_to_vec();
        for cut in 1..good.len() {
            let ours = FrameView::decode_bytes(Bytes::copy_from_slice(&good[..cut])).is_ok();
            let codec = Frame::decode_bytes(&good[..cut]).is_ok();
            assert_eq!(ours, codec, "prefix of {cut} bytes");
        }
        // a header value that is not UTF-8: field 5 { key "k", value 0xff }
        let bad = [0x2a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, 0xff];
        assert!(Frame::decode_bytes(&bad).is_err());
        assert!(FrameView::decode_bytes(Bytes::copy_from_slice(&bad)).is_err());
        // wrong wire type for field 1
        assert!(FrameView::decode_bytes(Bytes::from_static(&[0x0a, 0x01, 0x00])).is_err());
    }
}
