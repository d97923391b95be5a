//! A zero-copy reading of the frames clients send (pings and acks).
//!
//! Decoding an ack into `core::frame::Frame` allocates a string for every header key and
//! value; at 100 000 acks per second that was most of the emulator's reading cost. The
//! frames clients actually send are read by [`scan`], without prost and without
//! allocating; every other shape goes through the core's [`FrameView`], which reads
//! exactly what `Frame` reads (a property test holds the two together) and words the
//! error of a bad frame.

use std::ops::Range;

use bytes::Bytes;

use crate::core::frame::{header_key, DecodeError};
use crate::core::frame_view::FrameView;

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

impl ReadFields {
    /// Reads a received message: by [`scan`] when the frame is of the plain shape every
    /// client sends, else through [`FrameView`], which also words the error of a bad
    /// frame.
    pub(crate) fn read(bytes: &Bytes) -> Result<ReadFields, DecodeError> {
        match scan(bytes) {
            Some(f) => Ok(f),
            None => ReadFields::by_prost(bytes),
        }
    }

    /// By the core's decoder (prost's rules), its slices taken as `Bytes` of `bytes`.
    fn by_prost(bytes: &Bytes) -> Result<ReadFields, DecodeError> {
        let view = FrameView::decode(bytes)?;
        let first = |key: &str| {
            view.headers
                .iter()
                .find(|h| h.key == key.as_bytes())
                .map(|h| bytes.slice_ref(h.value.as_bytes()))
        };
        Ok(ReadFields {
            seq_id: view.seq_id,
            log_id: view.log_id,
            service: view.service,
            method: view.method,
            kind: first(header_key::TYPE),
            message_id: first(header_key::MESSAGE_ID),
            biz_rt: first(header_key::BIZ_RT),
            payload: view.payload.map_or_else(Bytes::new, |p| bytes.slice_ref(p)),
        })
    }
}

/// A header value as text (validated UTF-8 by `read`).
pub(crate) fn text(value: &Option<Bytes>) -> Option<&str> {
    value.as_deref().and_then(|v| std::str::from_utf8(v).ok())
}

/// A varint of at most 9 bytes (63 bits); longer ones, which prost takes up to 10 bytes
/// with its own overflow rule, are left to prost.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The bytes of a length-delimited field starting at `pos`.
fn delimited(buf: &[u8], pos: &mut usize) -> Option<Range<usize>> {
    let len = varint(buf, pos)?;
    let start = *pos;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if end > buf.len() {
        return None;
    }
    *pos = end;
    Some(start..end)
}

/// Reads a frame without prost and without allocating: acks and pings arrive at 100 000
/// a second, and decoding each into a view of the frame (then prost with `Bytes` fields:
/// a vector of headers, two reference counts per header) was a tenth of the emulator's
/// CPU. Only the plain shape is taken
/// — fields 1–5 and 8 with their own wire types, headers of fields 1 and 2, varints of
/// at most 9 bytes, every length in bounds, UTF-8 header strings — and read as prost
/// reads it (the last of a repeated scalar wins, a header's key and value too); anything
/// else returns `None` and goes through prost. A unit test holds the two to the same
/// answer on mutated frames.
pub(crate) fn scan(bytes: &Bytes) -> Option<ReadFields> {
    let buf = &bytes[..];
    let mut f = ReadFields {
        seq_id: 0,
        log_id: 0,
        service: 0,
        method: 0,
        kind: None,
        message_id: None,
        biz_rt: None,
        payload: Bytes::new(),
    };
    let (mut kind, mut message_id, mut biz_rt) = (None, None, None);
    let mut payload = None;
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        match key {
            // (field << 3) | wire type: 0 varint, 2 length-delimited
            0x08 => f.seq_id = varint(buf, &mut pos)?,
            0x10 => f.log_id = varint(buf, &mut pos)?,
            // int32 is sign-extended on the wire; prost truncates, as `as` does
            0x18 => f.service = varint(buf, &mut pos)? as i32,
            0x20 => f.method = varint(buf, &mut pos)? as i32,
            0x2a => {
                let header = delimited(buf, &mut pos)?;
                let (mut k, mut v) = (0..0, 0..0);
                let mut at = header.start;
                let inner = &buf[..header.end];
                while at < header.end {
                    match varint(inner, &mut at)? {
                        0x0a => k = delimited(inner, &mut at)?,
                        0x12 => v = delimited(inner, &mut at)?,
                        _ => return None,
                    }
                }
                // (short ASCII strings, the usual case, skip the UTF-8 decoder's setup)
                let utf8 = |r: &Range<usize>| {
                    buf[r.clone()].is_ascii() || std::str::from_utf8(&buf[r.clone()]).is_ok()
                };
                if !utf8(&k) || !utf8(&v) {
                    return None;
                }
                let key = &buf[k];
                let slot = if key == header_key::TYPE.as_bytes() {
                    &mut kind
                } else if key == header_key::MESSAGE_ID.as_bytes() {
                    &mut message_id
                } else if key == header_key::BIZ_RT.as_bytes() {
                    &mut biz_rt
                } else {
                    continue;
                };
                if slot.is_none() {
                    *slot = Some(v);
                }
            }
            0x42 => payload = Some(delimited(buf, &mut pos)?),
            _ => return None,
        }
    }
    f.kind = kind.map(|r| bytes.slice(r));
    f.message_id = message_id.map(|r| bytes.slice(r));
    f.biz_rt = biz_rt.map(|r| bytes.slice(r));
    f.payload = payload.map_or_else(Bytes::new, |r| bytes.slice(r));
    Some(f)
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
    }

    /// Frames as clients send them: acks (with `biz_rt`), pings, pongs.
    fn client_frames() -> Vec<Vec<u8>> {
        let mut ack = sample();
        ack.headers.push(Header {
            key: "biz_rt".into(),
            value: "12".into(),
        });
        ack.payload_encoding = None;
        ack.log_id_new = None;
        // (a negative int32 takes 10 bytes on the wire: that one goes through prost)
        ack.service = 33554678;
        let pong = Frame::pong(&Frame::ping(7), b"{}");
        vec![
            ack.encode_to_vec(),
            sample().encode_to_vec(),
            Frame::ping(33554678).encode_to_vec(),
            pong.encode_to_vec(),
            Frame::default().encode_to_vec(),
        ]
    }

    #[test]
    fn the_scan_reads_what_prost_reads() {
        use rand::Rng;
        let frames = client_frames();
        // the plain frames clients send take the fast path
        assert!(scan(&Bytes::from(frames[0].clone())).is_some());
        assert!(scan(&Bytes::from(frames[2].clone())).is_some());
        let mut rng = rand::rng();
        let mut scanned = 0;
        for round in 0..20_000 {
            let mut b = frames[round % frames.len()].clone();
            // mutate: flip, cut, insert or duplicate a span
            for _ in 0..rng.random_range(0..4) {
                if b.is_empty() {
                    break;
                }
                let i = rng.random_range(0..b.len());
                match rng.random_range(0..4) {
                    0 => b[i] = rng.random(),
                    1 => b.truncate(i),
                    2 => b.insert(i, rng.random()),
                    _ => {
                        let j = rng.random_range(i..=b.len());
                        let span = b[i..j].to_vec();
                        b.extend_from_slice(&span);
                    }
                }
            }
            let bytes = Bytes::from(b);
            let fast = scan(&bytes);
            let slow = ReadFields::by_prost(&bytes);
            if let Some(f) = fast {
                scanned += 1;
                assert_eq!(Ok(f), slow.map_err(|e| e.0), "{:?}", &bytes[..]);
            }
            // and `read` agrees with prost on everything, errors included
            let read = ReadFields::read(&bytes).map_err(|e| e.0);
            assert_eq!(read, ReadFields::by_prost(&bytes).map_err(|e| e.0));
        }
        assert!(scanned > 2_000, "{scanned}");
    }

    #[test]
    fn rejects_what_the_codec_rejects() {
        let good = sample().encode_to_vec();
        for cut in 1..good.len() {
            let ours = ReadFields::read(&Bytes::copy_from_slice(&good[..cut])).is_ok();
            let codec = Frame::decode_bytes(&good[..cut]).is_ok();
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
