//! The protocol layer's codec: the one reader of received frames and the writers of the
//! frames sent per event, shared by the transport (`src/core`) and the emulator
//! (`src/emulator`).
//!
//! [`FrameView`] reads the same fields as [`Frame`], by the same rules as prost, but its
//! header keys and values and its payload are slices of the received message: no `String`
//! or reference-counted `Bytes` per field (a data frame carries five or six headers;
//! slicing each as `Bytes` cost two atomic operations, and allocating each as a `String`,
//! a `malloc` and a `free`). Where the headers go is the reader's [`HeaderSink`]: the
//! transport keeps them all (a `Vec`), the emulator keeps the three it matches acks by,
//! so neither allocates more than it needs and both read by the same rules.
//!
//! The writers ([`AckTemplate`], [`encoded_len`] and [`encode_head`]) produce exactly the
//! bytes of `Frame::encode_to_vec` for the same content, without building a `Frame` of
//! owned strings first. prost's [`Frame`] stays the owned form of a frame (control frames,
//! frames built by tests and the emulator's `sendFrame`), the wording of a decode error,
//! and the oracle every function here is held to by property tests (tests/codec_props.rs);
//! docs/PROTOCOL.md §4 and docs/ARCHITECTURE.md say why both exist.

use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, WireType,
};

use super::frame::{header_key, AckPayload, DecodeError, Frame};

/// [`super::frame::Header`], borrowed; both are checked to be UTF-8 as they are read. The
/// value is kept as text, so a lookup does not check it again; keys are only compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderView<'a> {
    pub key: &'a [u8],
    pub value: &'a str,
}

/// Where a reader puts the headers of a frame, in wire order, as it meets them.
pub trait HeaderSink<'a> {
    fn push(&mut self, header: HeaderView<'a>);
}

/// Every header (the transport's form).
impl<'a> HeaderSink<'a> for Vec<HeaderView<'a>> {
    fn push(&mut self, header: HeaderView<'a>) {
        Vec::push(self, header);
    }
}

/// [`Frame`], borrowed from the message it was read from; `H` holds its headers (all of
/// them, by default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameView<'a, H = Vec<HeaderView<'a>>> {
    pub seq_id: u64,
    pub log_id: u64,
    pub service: i32,
    pub method: i32,
    pub headers: H,
    pub payload_encoding: Option<&'a [u8]>,
    pub payload_type: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub log_id_new: Option<&'a [u8]>,
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

impl Headers for FrameView<'_> {
    fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key.as_bytes())
            .map(|h| h.value)
    }
}

/// prost's nesting limit (`prost::RECURSION_LIMIT`), which bounds groups in unknown fields.
const RECURSION_LIMIT: u32 = 100;

/// The most headers a frame may carry. Feishu's carry fewer than ten; without a bound, a
/// 16 MB frame of empty headers decodes into 8 million of them (hundreds of MB) and an
/// ack that echoes them all.
pub const MAX_HEADERS: usize = 256;
/// The most bytes a frame's headers may take, their encoding included.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

impl<'a> FrameView<'a> {
    /// Decodes one WebSocket message without copying it. Accepts and rejects exactly
    /// what [`Frame::decode_bytes`] does (a property test holds the two together), with
    /// the same error: any failure is decoded again by `Frame` for its message.
    ///
    /// One rule prost does not have: a frame with more than [`MAX_HEADERS`] headers or
    /// [`MAX_HEADER_BYTES`] of them is refused as soon as the bound is passed, before
    /// anything is allocated for the rest.
    pub fn decode(bytes: &'a [u8]) -> Result<FrameView<'a>, DecodeError> {
        FrameView::decode_into(bytes, Vec::with_capacity(8))
    }

    /// The `type` header, or "" when absent.
    pub fn frame_type(&self) -> &str {
        self.header(header_key::TYPE).unwrap_or("")
    }
}

impl<'a, H: HeaderSink<'a>> FrameView<'a, H> {
    /// [`FrameView::decode`], handing the headers to `headers` instead of a vector: same
    /// rules, same bounds, same errors.
    pub fn decode_into(bytes: &'a [u8], headers: H) -> Result<FrameView<'a, H>, DecodeError> {
        let mut oversized = false;
        match FrameView::read(bytes, headers, &mut oversized) {
            Some(v) => Ok(v),
            None if oversized => Err(DecodeError(format!(
                "the frame carries more than {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes of them"
            ))),
            _ => Err(Frame::decode_bytes(bytes)
                .err()
                .unwrap_or_else(|| DecodeError("undecodable frame".into()))),
        }
    }

    /// prost's rules for `pbbp2.Frame`, on a slice: the last of a repeated scalar wins,
    /// headers accumulate, unknown fields are skipped, a wrong wire type, a length past
    /// the end or a `string` field (any occurrence) that is not UTF-8 fails. `None`
    /// wherever prost fails, and (with `oversized` set) past the header bounds.
    fn read(mut buf: &'a [u8], headers: H, oversized: &mut bool) -> Option<FrameView<'a, H>> {
        let mut v = FrameView {
            seq_id: 0,
            log_id: 0,
            service: 0,
            method: 0,
            headers,
            payload_encoding: None,
            payload_type: None,
            payload: None,
            log_id_new: None,
        };
        let (mut header_count, mut header_bytes) = (0, 0);
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf).ok()?;
            match tag {
                1 => v.seq_id = varint(wire_type, &mut buf)?,
                2 => v.log_id = varint(wire_type, &mut buf)?,
                // prost reads an int32 as a varint truncated to 32 bits.
                3 => v.service = varint(wire_type, &mut buf)? as i32,
                4 => v.method = varint(wire_type, &mut buf)? as i32,
                5 => {
                    let before = buf.len();
                    let header = delimited(wire_type, &mut buf)?;
                    // The field's one-byte key (read already), its length and its bytes.
                    header_bytes += 1 + before - buf.len();
                    if header_count == MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
                        *oversized = true;
                        return None;
                    }
                    header_count += 1;
                    v.headers.push(read_header(header)?);
                }
                // `string` fields: prost checks every occurrence, not only the last.
                6 => v.payload_encoding = Some(utf8(delimited(wire_type, &mut buf)?)?),
                7 => v.payload_type = Some(utf8(delimited(wire_type, &mut buf)?)?),
                8 => v.payload = Some(delimited(wire_type, &mut buf)?),
                9 => v.log_id_new = Some(utf8(delimited(wire_type, &mut buf)?)?),
                _ => skip(wire_type, tag, &mut buf, RECURSION_LIMIT)?,
            }
        }
        Some(v)
    }
}

/// A nested `pbbp2.Header`: prost decodes it one nesting level down.
fn read_header(mut buf: &[u8]) -> Option<HeaderView<'_>> {
    let mut h = HeaderView::default();
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        match tag {
            1 => h.key = utf8(delimited(wire_type, &mut buf)?)?,
            2 => h.value = std::str::from_utf8(delimited(wire_type, &mut buf)?).ok()?,
            _ => skip(wire_type, tag, &mut buf, RECURSION_LIMIT - 1)?,
        }
    }
    Some(h)
}

/// `b` if it is UTF-8. Keys and the short `string` fields are nearly always ASCII, which
/// an inline check settles without a call into the full validator.
#[inline]
fn utf8(b: &[u8]) -> Option<&[u8]> {
    (b.is_ascii() || std::str::from_utf8(b).is_ok()).then_some(b)
}

fn varint(wire_type: WireType, buf: &mut &[u8]) -> Option<u64> {
    if wire_type != WireType::Varint {
        return None;
    }
    decode_varint(buf).ok()
}

/// A length-delimited field's bytes.
fn delimited<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    if wire_type != WireType::LengthDelimited {
        return None;
    }
    take(decode_varint(buf).ok()?, buf)
}

fn take<'a>(len: u64, buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    if len > buf.len() as u64 {
        return None;
    }
    let (field, rest) = buf.split_at(len as usize);
    *buf = rest;
    Some(field)
}

/// `prost::encoding::skip_field` with its nesting budget (its `DecodeContext` cannot be
/// made one level down from outside prost).
fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8], budget: u32) -> Option<()> {
    if budget == 0 {
        return None;
    }
    let len = match wire_type {
        WireType::Varint => decode_varint(buf).map(|_| 0).ok()?,
        WireType::ThirtyTwoBit => 4,
        WireType::SixtyFourBit => 8,
        WireType::LengthDelimited => decode_varint(buf).ok()?,
        WireType::StartGroup => loop {
            let (inner_tag, inner_type) = decode_key(buf).ok()?;
            if inner_type == WireType::EndGroup {
                if inner_tag != tag {
                    return None;
                }
                break 0;
            }
            skip(inner_type, inner_tag, buf, budget - 1)?;
        },
        WireType::EndGroup => return None,
    };
    take(len, buf).map(|_| ())
}

/// Writes a `bytes`/`string` field as prost does: omitted when empty (proto3 default).
fn put_bytes(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    if value.is_empty() {
        return;
    }
    put_field(tag, value, out);
}

/// Writes a length-delimited field, empty or not (an `optional` one is written when set).
fn put_field(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// The encoded length of [`put_bytes`]`(1 or 2, value)`: a one-byte key, the length, the
/// bytes.
fn field_len(value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        1 + encoded_len_varint(value.len() as u64) + value.len()
    }
}

/// Writes header `key: value` as field 5 of a frame.
fn put_header(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    encode_key(5, WireType::LengthDelimited, out);
    encode_varint(header_len(key, value) as u64, out);
    put_bytes(1, key, out);
    put_bytes(2, value, out);
}

/// The encoded length of a `Header` message (without its field 5 key and length).
fn header_len(key: &[u8], value: &[u8]) -> usize {
    field_len(key) + field_len(value)
}

/// The four `required` fields every frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameIds {
    pub seq_id: u64,
    pub log_id: u64,
    pub service: i32,
    pub method: i32,
}

impl FrameIds {
    /// `Frame`'s four `required` fields are always written; prost writes an int32 as the
    /// varint of its sign extension.
    fn put(&self, out: &mut Vec<u8>) {
        for (tag, v) in self.varints() {
            encode_key(tag, WireType::Varint, out);
            encode_varint(v, out);
        }
    }

    fn len(&self) -> usize {
        // Each key is one byte.
        self.varints()
            .iter()
            .map(|&(_, v)| 1 + encoded_len_varint(v))
            .sum()
    }

    fn varints(&self) -> [(u32, u64); 4] {
        [
            (1, self.seq_id),
            (2, self.log_id),
            (3, self.service as i64 as u64),
            (4, self.method as i64 as u64),
        ]
    }
}

/// The exact length of a frame of `ids`, `headers` and a payload of `payload_len` bytes
/// (no payload field when `None`), as [`encode_head`] and the payload write it: a sender
/// can allocate the frame at exactly its size (`Bytes::from(Vec)` allocates a second
/// block whenever capacity and length differ).
pub fn encoded_len(ids: &FrameIds, headers: &[(&str, &str)], payload_len: Option<usize>) -> usize {
    let headers: usize = headers
        .iter()
        .map(|(k, v)| {
            let inner = header_len(k.as_bytes(), v.as_bytes());
            1 + encoded_len_varint(inner as u64) + inner
        })
        .sum();
    let payload = payload_len.map_or(0, |n| 1 + encoded_len_varint(n as u64) + n);
    ids.len() + headers + payload
}

/// Appends a frame of `ids` and `headers` (fields 1–5) and, when `payload_len` is given,
/// the key and length of its payload (field 8), whose bytes the caller appends next: the
/// bytes of `Frame::encode_to_vec` for the same content, with the payload written
/// wherever it comes from (a slice of an event, generated padding) without a copy of its
/// own first.
pub fn encode_head(
    ids: &FrameIds,
    headers: &[(&str, &str)],
    payload_len: Option<usize>,
    out: &mut Vec<u8>,
) {
    ids.put(out);
    for (k, v) in headers {
        put_header(k.as_bytes(), v.as_bytes(), out);
    }
    if let Some(n) = payload_len {
        encode_key(8, WireType::LengthDelimited, out);
        encode_varint(n as u64, out);
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
    pub fn new(frame: &FrameView<'_>) -> AckTemplate {
        // Room for the fixed fields and every header (tag and length bytes included).
        let headers: usize = frame
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.len() + 8)
            .sum();
        let mut bytes = Vec::with_capacity(headers + 48);
        FrameIds {
            seq_id: frame.seq_id,
            log_id: frame.log_id,
            service: frame.service,
            method: frame.method,
        }
        .put(&mut bytes);
        let mut message_id = (0, 0);
        for h in &frame.headers {
            if h.key == header_key::BIZ_RT.as_bytes() {
                continue;
            }
            put_header(h.key, h.value.as_bytes(), &mut bytes);
            if h.key == header_key::MESSAGE_ID.as_bytes() && message_id == (0, 0) {
                // The value is the message's last `len` bytes.
                message_id = (bytes.len() - h.value.len(), bytes.len());
            }
        }
        let mid = bytes.len();
        if let Some(v) = frame.payload_encoding {
            put_field(6, v, &mut bytes);
        }
        if let Some(v) = frame.payload_type {
            put_field(7, v, &mut bytes);
        }
        let post = bytes.len();
        if let Some(v) = frame.log_id_new {
            put_field(9, v, &mut bytes);
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
        let mut digits = [0u8; 20];
        let biz_rt = decimal(biz_rt_ms, &mut digits);
        let owned;
        let payload: &[u8] = match response {
            AckPayload::Ok => AckPayload::OK_JSON,
            AckPayload::Failed => AckPayload::FAILED_JSON,
            other => {
                owned = other.to_json();
                &owned
            }
        };
        let mut out = Vec::with_capacity(self.bytes.len() + payload.len() + 32);
        out.extend_from_slice(&self.bytes[..self.mid]);
        put_header(header_key::BIZ_RT.as_bytes(), biz_rt.as_bytes(), &mut out);
        out.extend_from_slice(&self.bytes[self.mid..self.post]);
        put_field(8, payload, &mut out);
        out.extend_from_slice(&self.bytes[self.post..]);
        out
    }
}

/// `n` in decimal, written into `buf`: per-event numbers (an ack's `biz_rt`, a batch's
/// `seq`) without the `String` of `to_string` or the formatting machinery of `write!`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            // Only ASCII digits were written.
            return std::str::from_utf8(&buf[at..]).unwrap_or("0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::{Header, METHOD_DATA};
    use prost::Message;

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
        let bytes = f.encode_to_vec();
        let v = FrameView::decode(&bytes).unwrap();
        assert_eq!(v.header("message_id"), Some("m1"));
        assert_eq!(v.header("trace_id"), Some("trace-m1"));
        assert_eq!(v.header("nope"), None);
        assert_eq!(v.frame_type(), "event");
        assert_eq!(v.payload, Some(&b"{}"[..]));
        assert_eq!((v.seq_id, v.log_id, v.service, v.method), (5, 6, 77, 1));
    }

    #[test]
    fn the_template_encodes_the_acks_of_frame() {
        let f = event_frame();
        let bytes = f.encode_to_vec();
        let v = FrameView::decode(&bytes).unwrap();
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
        let err = FrameView::decode(&bytes).unwrap_err();
        assert_eq!(Some(err), Frame::decode_bytes(&bytes).err());
    }

    /// Unknown fields holding groups nested `depth` deep: prost's nesting limit is 100 at
    /// the top level and one less inside a header, and the view must fail exactly where
    /// `Frame` fails.
    #[test]
    fn nested_groups_fail_where_prost_fails() {
        let groups = |depth: usize| {
            let mut g = Vec::new();
            for _ in 0..depth {
                encode_key(15, WireType::StartGroup, &mut g);
            }
            for _ in 0..depth {
                encode_key(15, WireType::EndGroup, &mut g);
            }
            g
        };
        let base = event_frame().encode_to_vec();
        for depth in 97..=102 {
            let mut top = base.clone();
            top.extend(groups(depth));
            let mut inner = groups(depth);
            put_field(1, b"k", &mut inner);
            let mut in_header = base.clone();
            put_field(5, &inner, &mut in_header);
            for bytes in [top, in_header] {
                let owned = Frame::decode_bytes(&bytes);
                let view = FrameView::decode(&bytes);
                assert_eq!(owned.is_ok(), view.is_ok(), "depth {depth}");
                assert_eq!(owned.err(), view.err(), "depth {depth}");
            }
        }
        // Both sides of the limit were reached.
        let mut ok = base.clone();
        ok.extend(groups(99));
        assert!(FrameView::decode(&ok).is_ok());
        let mut too_deep = base;
        too_deep.extend(groups(101));
        assert!(FrameView::decode(&too_deep).is_err());
    }

    /// A field given twice: the last wins, but prost checks every occurrence of a
    /// `string` field, so an invalid first one fails the frame.
    #[test]
    fn every_occurrence_of_a_string_field_is_checked() {
        let base = event_frame().encode_to_vec();
        let bad = [0xFFu8, b'x'];
        let mut header = Vec::new();
        put_field(1, &bad, &mut header);
        put_field(1, b"k", &mut header);
        let mut twice_in_header = base.clone();
        put_field(5, &header, &mut twice_in_header);
        let mut twice_at_top = base.clone();
        put_field(6, &bad, &mut twice_at_top);
        put_field(6, b"ok", &mut twice_at_top);
        for bytes in [twice_in_header, twice_at_top] {
            let owned = Frame::decode_bytes(&bytes);
            assert!(owned.is_err());
            assert_eq!(FrameView::decode(&bytes).err(), owned.err());
        }
        let mut good_twice = base;
        put_field(6, b"first", &mut good_twice);
        put_field(6, b"last", &mut good_twice);
        let v = FrameView::decode(&good_twice).unwrap();
        assert_eq!(v.payload_encoding, Some(&b"last"[..]));
    }

    /// Data frames, pings and pongs written by `encode_head` are prost's bytes, at the
    /// length `encoded_len` promised.
    #[test]
    fn the_head_encoder_writes_the_frames_of_prost() {
        for (service, method, trace, payload) in [
            (33554678, METHOD_DATA, "trace-1", Some(&b"{\"a\":1}"[..])),
            (-1, METHOD_DATA, "", Some(&b""[..])),
            (0, 0, "t", Some(&[0xff, 0x00, 0x80][..])),
            (i32::MIN, -7, "", None),
        ] {
            let ids = FrameIds {
                seq_id: 7,
                log_id: 300,
                service,
                method,
            };
            let headers = [
                ("type", "event"),
                ("message_id", "m1"),
                ("", ""),
                ("seq", ""),
                ("trace_id", trace),
            ];
            let mut ours = Vec::new();
            encode_head(&ids, &headers, payload.map(<[u8]>::len), &mut ours);
            ours.extend_from_slice(payload.unwrap_or_default());
            let reference = Frame {
                seq_id: 7,
                log_id: 300,
                service,
                method,
                headers: headers
                    .iter()
                    .map(|(k, v)| Header {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                payload: payload.map(<[u8]>::to_vec),
                ..Default::default()
            };
            assert_eq!(ours, reference.encode_to_vec());
            assert_eq!(
                ours.len(),
                encoded_len(&ids, &headers, payload.map(<[u8]>::len))
            );
        }
    }

    /// A sink that keeps only some headers reads them by the same rules as the vector.
    #[test]
    fn a_sink_sees_every_header_in_order() {
        #[derive(Default)]
        struct Keys(Vec<String>);
        impl<'a> HeaderSink<'a> for Keys {
            fn push(&mut self, h: HeaderView<'a>) {
                self.0
                    .push(format!("{}={}", String::from_utf8_lossy(h.key), h.value));
            }
        }
        let bytes = event_frame().encode_to_vec();
        let all = FrameView::decode(&bytes).unwrap();
        let keys = FrameView::decode_into(&bytes, Keys::default()).unwrap();
        let expected: Vec<String> = all
            .headers
            .iter()
            .map(|h| format!("{}={}", String::from_utf8_lossy(h.key), h.value))
            .collect();
        assert_eq!(keys.headers.0, expected);
        assert_eq!(
            (keys.seq_id, keys.payload, keys.log_id_new),
            (all.seq_id, all.payload, all.log_id_new)
        );
        // The bounds hold whatever the sink.
        let mut many = event_frame();
        many.headers = vec![Header::default(); MAX_HEADERS + 1];
        let bytes = many.encode_to_vec();
        assert!(FrameView::decode_into(&bytes, Keys::default()).is_err());
    }

    #[test]
    fn biz_rt_is_written_in_decimal() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 1234, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }
}
