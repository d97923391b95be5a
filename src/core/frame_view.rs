//! The hot path's form of a received frame: [`FrameView`] decodes with prost like
//! [`Frame`], but its header keys and values and its payload are slices of the received
//! message instead of fresh `String`s and `Vec`s (a data frame carries five headers: ten
//! allocations saved per event). [`AckTemplate`] keeps what an ack echoes in one small
//! buffer, so a frame waiting for its handler pins neither the socket's read buffer nor
//! a vector of headers.

use bytes::Bytes;
use prost::encoding::{self as enc};
use prost::Message;

use super::frame::{header_key, AckPayload, DecodeError, Frame};

/// [`super::frame::Header`] with borrowed bytes. The wire format of `string` and `bytes`
/// is the same; UTF-8 is checked after decoding (see [`FrameView::decode`]).
#[derive(Clone, PartialEq, Message)]
pub struct HeaderView {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// [`Frame`] with borrowed bytes: the same tags, types and presence rules.
#[derive(Clone, PartialEq, Message)]
pub struct FrameView {
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<HeaderView>,
    #[prost(bytes = "bytes", optional, tag = "6")]
    pub payload_encoding: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "7")]
    pub payload_type: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "8")]
    pub payload: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub log_id_new: Option<Bytes>,
}

/// Looks up headers by key: both frame forms answer it, so the fragment assembler works
/// on either.
pub trait Headers {
    /// The first value of header `key`, if present.
    fn header(&self, key: &str) -> Option<&str>;
}

impl Headers for Frame {
    fn header(&self, key: &str) -> Option<&str> {
        Frame::header(self, key)
    }
}

impl Headers for FrameView {
    fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key.as_bytes())
            // Checked to be UTF-8 by `decode`.
            .map(|h| std::str::from_utf8(&h.value).unwrap_or(""))
    }
}

impl FrameView {
    /// Decodes one WebSocket message without copying it. Accepts and rejects exactly
    /// what [`Frame::decode_bytes`] does, with the same error: the decoders are the same
    /// prost code, and the one difference, UTF-8 in the string fields, is checked here
    /// (and any failure is re-decoded by `Frame` for its message).
    pub fn decode(bytes: Bytes) -> Result<FrameView, DecodeError> {
        let strings_ok = |v: &FrameView| {
            let utf8 = |b: &Bytes| std::str::from_utf8(b).is_ok();
            v.headers.iter().all(|h| utf8(&h.key) && utf8(&h.value))
                && [&v.payload_encoding, &v.payload_type, &v.log_id_new]
                    .into_iter()
                    .flatten()
                    .all(utf8)
        };
        match <FrameView as Message>::decode(bytes.clone()) {
            Ok(v) if strings_ok(&v) => Ok(v),
            _ => Err(Frame::decode_bytes(&bytes)
                .err()
                .unwrap_or_else(|| DecodeError("undecodable frame".into()))),
        }
    }

    /// The `type` header, or "" when absent.
    pub fn frame_type(&self) -> &str {
        self.header(header_key::TYPE).unwrap_or("")
    }
}

/// What an ack echoes of the frame that completed a message, encoded once: the fields
/// before `biz_rt` (1–5, every header but a `biz_rt` the server sent), the ones between
/// `biz_rt` and the payload (6, 7), and the one after it (9). [`AckTemplate::encode`]
/// then produces exactly the bytes of `Frame::ack(…).encode_to_vec()`.
#[derive(Debug, Clone)]
pub struct AckTemplate {
    bytes: Vec<u8>,
    /// Where `biz_rt` goes.
    mid: usize,
    /// Where the payload goes.
    post: usize,
    /// The `message_id` header's value within `bytes`, for log lines.
    message_id: (usize, usize),
}

impl AckTemplate {
    pub fn new(frame: &FrameView) -> AckTemplate {
        // Room for the fixed fields and every header (tag and length bytes included).
        let headers: usize = frame
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.len() + 8)
            .sum();
        let mut bytes = Vec::with_capacity(headers + 48);
        enc::uint64::encode(1, &frame.seq_id, &mut bytes);
        enc::uint64::encode(2, &frame.log_id, &mut bytes);
        enc::int32::encode(3, &frame.service, &mut bytes);
        enc::int32::encode(4, &frame.method, &mut bytes);
        let mut message_id = (0, 0);
        for h in &frame.headers {
            if h.key == header_key::BIZ_RT.as_bytes() {
                continue;
            }
            enc::message::encode(5, h, &mut bytes);
            if h.key == header_key::MESSAGE_ID.as_bytes() && message_id == (0, 0) {
                // The value is the message's last `len` bytes.
                message_id = (bytes.len() - h.value.len(), bytes.len());
            }
        }
        let mid = bytes.len();
        if let Some(v) = &frame.payload_encoding {
            enc::bytes::encode(6, v, &mut bytes);
        }
        if let Some(v) = &frame.payload_type {
            enc::bytes::encode(7, v, &mut bytes);
        }
        let post = bytes.len();
        if let Some(v) = &frame.log_id_new {
            enc::bytes::encode(9, v, &mut bytes);
        }
        AckTemplate {
            bytes,
            mid,
            post,
            message_id,
        }
    }

    /// The `message_id` header of the frame, or "".
    pub fn message_id(&self) -> &str {
        std::str::from_utf8(&self.bytes[self.message_id.0..self.message_id.1]).unwrap_or("")
    }

    /// The ack: these fields, `biz_rt` (handler milliseconds) and the response payload.
    pub fn encode(&self, biz_rt_ms: u64, response: &AckPayload) -> Vec<u8> {
        let biz_rt = HeaderView {
            key: Bytes::from_static(header_key::BIZ_RT.as_bytes()),
            value: Bytes::from(biz_rt_ms.to_string()),
        };
        let payload = response.to_json();
        let mut out = Vec::with_capacity(self.bytes.len() + payload.len() + 32);
        out.extend_from_slice(&self.bytes[..self.mid]);
        enc::message::encode(5, &biz_rt, &mut out);
        out.extend_from_slice(&self.bytes[self.mid..self.post]);
        enc::bytes::encode(8, &payload, &mut out);
        out.extend_from_slice(&self.bytes[self.post..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::{Header, METHOD_DATA};

    fn event_frame() -> Frame {
        let h = |k: &str, v: &str| Header {
            key: k.into(),
            value: v.into(),
        };
        Frame {
            seq_id: 5,
            log_id: 6,
            service: 77,
            method: METHOD_DATA,
            headers: vec![
                h("type", "event"),
                h("message_id", "m1"),
                h("biz_rt", "9"),
                h("sum", "1"),
                h("seq", "0"),
                h("trace_id", "trace-m1"),
                h("", ""),
            ],
            payload_type: Some("".into()),
            payload: Some(b"{}".to_vec()),
            log_id_new: Some("ln".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_view_reads_what_the_frame_reads() {
        let f = event_frame();
        let v = FrameView::decode(Bytes::from(f.encode_to_vec())).unwrap();
        assert_eq!(v.header("message_id"), Some("m1"));
        assert_eq!(v.header("trace_id"), Some("trace-m1"));
        assert_eq!(v.header("nope"), None);
        assert_eq!(v.frame_type(), "event");
        assert_eq!(v.payload.as_deref(), Some(&b"{}"[..]));
        assert_eq!((v.seq_id, v.log_id, v.service, v.method), (5, 6, 77, 1));
    }

    #[test]
    fn the_template_encodes_the_acks_of_frame() {
        let f = event_frame();
        let v = FrameView::decode(Bytes::from(f.encode_to_vec())).unwrap();
        let t = AckTemplate::new(&v);
        assert_eq!(t.message_id(), "m1");
        for (rt, resp) in [
            (0, AckPayload::Ok),
            (1234, AckPayload::Failed),
            (7, AckPayload::OkWithData(br#"{"a":1}"#.to_vec())),
        ] {
            assert_eq!(
                t.encode(rt, &resp),
                Frame::ack(&f, rt, &resp).encode_to_vec()
            );
        }
    }

    #[test]
    fn invalid_utf8_is_the_frames_error() {
        let mut f = event_frame();
        f.headers[1].value = "mé".into();
        let mut bytes = f.encode_to_vec();
        let at = bytes.iter().position(|&b| b == 0xC3).unwrap();
        bytes[at] = 0xFF;
        let err = FrameView::decode(Bytes::from(bytes.clone())).unwrap_err();
        assert_eq!(Some(err), Frame::decode_bytes(&bytes).err());
    }
}
