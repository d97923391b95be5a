//! The pbbp2 `Frame`/`Header` codec of Feishu's long connection (docs/PROTOCOL.md §4).
//!
//! The schema is proto2 with `required` fields. We decode with prost's proto3-style
//! defaults on purpose: a frame that lacks a required field decodes as 0 / "" instead of
//! being rejected, because the server is the authority and a missing `LogID` must not cost
//! an event. Encoding writes every required field (as protobufjs does for the official
//! Node client), so our frames are byte-identical to the official client's.

use base64::Engine;
use prost::Message;

/// `Frame.method` of a control frame (ping, pong).
pub const METHOD_CONTROL: i32 = 0;
/// `Frame.method` of a data frame (event, card).
pub const METHOD_DATA: i32 = 1;

/// One `key: value` pair of a frame's headers.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Header {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One binary WebSocket message of the long connection.
///
/// Field options mirror proto2 presence: the required scalars are plain fields that prost
/// always writes (see [`Frame::encode_to_vec`] below for why), the optional ones are
/// `Option`s so a frame echoed back in an ack keeps exactly the fields it arrived with.
#[derive(Clone, PartialEq, Message)]
pub struct Frame {
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

/// Why bytes could not be decoded into a [`Frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed frame: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// The `type` header values the protocol uses.
pub mod frame_type {
    pub const PING: &str = "ping";
    pub const PONG: &str = "pong";
    pub const EVENT: &str = "event";
    pub const CARD: &str = "card";
}

/// Header keys the protocol uses.
pub mod header_key {
    pub const TYPE: &str = "type";
    pub const MESSAGE_ID: &str = "message_id";
    pub const SUM: &str = "sum";
    pub const SEQ: &str = "seq";
    pub const TRACE_ID: &str = "trace_id";
    pub const BIZ_RT: &str = "biz_rt";
}

impl Frame {
    /// Decodes one WebSocket message. Never panics; prost bounds every length prefix by
    /// the bytes actually present, so a 2 GiB prefix is an error, not an allocation.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Frame, DecodeError> {
        Frame::decode(bytes).map_err(|e| DecodeError(e.to_string()))
    }

    /// The first value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// The `type` header, or "" when absent.
    pub fn frame_type(&self) -> &str {
        self.header(header_key::TYPE).unwrap_or("")
    }

    /// The client's ping: `SeqID=0, LogID=0, service, method=0, headers=[type=ping]`.
    pub fn ping(service: i32) -> Frame {
        Frame {
            seq_id: 0,
            log_id: 0,
            service,
            method: METHOD_CONTROL,
            headers: vec![Header {
                key: header_key::TYPE.into(),
                value: frame_type::PING.into(),
            }],
            ..Default::default()
        }
    }

    /// The server's pong answering `ping`, carrying the client config as JSON.
    pub fn pong(ping: &Frame, client_config_json: &[u8]) -> Frame {
        Frame {
            seq_id: ping.seq_id,
            log_id: ping.log_id,
            service: ping.service,
            method: METHOD_CONTROL,
            headers: vec![Header {
                key: header_key::TYPE.into(),
                value: frame_type::PONG.into(),
            }],
            payload: Some(client_config_json.to_vec()),
            ..Default::default()
        }
    }

    /// The ack for the frame that completed a message: the same frame with every header
    /// it carried, plus `biz_rt` (handler milliseconds) and the response payload.
    pub fn ack(received: &Frame, biz_rt_ms: u64, response: &AckPayload) -> Frame {
        let mut headers = Vec::with_capacity(received.headers.len() + 1);
        headers.extend(
            received
                .headers
                .iter()
                .filter(|h| h.key != header_key::BIZ_RT)
                .cloned(),
        );
        headers.push(Header {
            key: header_key::BIZ_RT.into(),
            value: biz_rt_ms.to_string(),
        });
        Frame {
            seq_id: received.seq_id,
            log_id: received.log_id,
            service: received.service,
            method: received.method,
            headers,
            payload_encoding: received.payload_encoding.clone(),
            payload_type: received.payload_type.clone(),
            payload: Some(response.to_json()),
            log_id_new: received.log_id_new.clone(),
        }
    }
}

/// What an ack tells Feishu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckPayload {
    /// `{"code":200}`: handled, nothing to return.
    Ok,
    /// `{"code":200,"data":"<base64>"}`: handled; `data` holds the JSON of the result,
    /// already serialised (a card reply, say).
    OkWithData(Vec<u8>),
    /// `{"code":500}`: failed; Feishu re-delivers.
    Failed,
}

impl AckPayload {
    pub const OK_JSON: &'static [u8] = br#"{"code":200}"#;
    pub const FAILED_JSON: &'static [u8] = br#"{"code":500}"#;

    pub fn to_json(&self) -> Vec<u8> {
        match self {
            AckPayload::Ok => AckPayload::OK_JSON.to_vec(),
            AckPayload::Failed => AckPayload::FAILED_JSON.to_vec(),
            AckPayload::OkWithData(json) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(json);
                let mut out = Vec::with_capacity(b64.len() + 24);
                out.extend_from_slice(br#"{"code":200,"data":""#);
                out.extend_from_slice(b64.as_bytes());
                out.extend_from_slice(br#""}"#);
                out
            }
        }
    }

    /// Reads an ack payload back (the emulator's side). Returns the code and the decoded
    /// `data` bytes, if any.
    pub fn parse(payload: &[u8]) -> Result<(i64, Option<Vec<u8>>), DecodeError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            code: Option<i64>,
            data: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(payload)
            .map_err(|e| DecodeError(format!("ack payload is not JSON: {e}")))?;
        let code = raw
            .code
            .ok_or_else(|| DecodeError("ack payload has no code".into()))?;
        let data = match raw.data {
            Some(s) if !s.is_empty() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| DecodeError(format!("ack data is not base64: {e}")))?,
            ),
            _ => None,
        };
        Ok((code, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn ping_matches_the_official_25_bytes() {
        let expected =
            hex("08 00 10 00 18 f6 81 80 10 20 00 2a 0c 0a 04 74 79 70 65 12 04 70 69 6e 67");
        assert_eq!(Frame::ping(33554678).encode_to_vec(), expected);
        assert_eq!(
            Frame::decode_bytes(&expected).unwrap(),
            Frame::ping(33554678)
        );
    }

    #[test]
    fn negative_service_sign_extends() {
        let bytes = Frame::ping(-1).encode_to_vec();
        let decoded = Frame::decode_bytes(&bytes).unwrap();
        assert_eq!(decoded.service, -1);
        // tag 0x18 followed by a 10-byte varint
        let pos = bytes.iter().position(|b| *b == 0x18).unwrap();
        assert_eq!(
            &bytes[pos + 1..pos + 11],
            &hex("ff ff ff ff ff ff ff ff ff 01")[..]
        );
    }

    #[test]
    fn missing_required_fields_decode_as_zero() {
        // only headers: [type=pong]
        let bytes = hex("2a 0c 0a 04 74 79 70 65 12 04 70 6f 6e 67");
        let f = Frame::decode_bytes(&bytes).unwrap();
        assert_eq!((f.seq_id, f.log_id, f.service, f.method), (0, 0, 0, 0));
        assert_eq!(f.frame_type(), "pong");
        assert_eq!(f.payload, None);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = Frame::ping(7).encode_to_vec();
        bytes.extend_from_slice(&hex("50 2a")); // field 10, varint 42
        bytes.extend_from_slice(&hex("5a 03 61 62 63")); // field 11, bytes "abc"
        assert_eq!(Frame::decode_bytes(&bytes).unwrap(), Frame::ping(7));
    }

    #[test]
    fn truncated_and_hostile_input_is_an_error() {
        let ping = Frame::ping(33554678).encode_to_vec();
        for cut in 1..ping.len() {
            // every prefix either decodes or errors; none panics
            let _ = Frame::decode_bytes(&ping[..cut]);
        }
        assert!(Frame::decode_bytes(&ping[..ping.len() - 1]).is_err());
        // payload (field 8) with a 2 GiB length prefix and 3 bytes behind it
        assert!(Frame::decode_bytes(&hex("42 80 80 80 80 08 01 02 03")).is_err());
        // wrong wire type for field 1 (length-delimited instead of varint)
        assert!(Frame::decode_bytes(&hex("0a 01 00")).is_err());
    }

    #[test]
    fn ack_echoes_every_header_and_appends_biz_rt() {
        let received = Frame {
            seq_id: 5,
            log_id: 6,
            service: 77,
            method: METHOD_DATA,
            headers: vec![
                Header {
                    key: "type".into(),
                    value: "event".into(),
                },
                Header {
                    key: "message_id".into(),
                    value: "m1".into(),
                },
                Header {
                    key: "sum".into(),
                    value: "1".into(),
                },
                Header {
                    key: "seq".into(),
                    value: "0".into(),
                },
                Header {
                    key: "trace_id".into(),
                    value: "trace-m1".into(),
                },
            ],
            payload: Some(b"{}".to_vec()),
            ..Default::default()
        };
        let ack = Frame::ack(&received, 3, &AckPayload::Ok);
        assert_eq!(ack.headers.len(), 6);
        assert_eq!(&ack.headers[..5], &received.headers[..]);
        assert_eq!(ack.header("biz_rt"), Some("3"));
        assert_eq!(ack.payload.as_deref(), Some(&br#"{"code":200}"#[..]));
        assert_eq!(
            (ack.seq_id, ack.log_id, ack.service, ack.method),
            (5, 6, 77, 1)
        );
        // A biz_rt the server sent is replaced.
        let mut with_rt = received.clone();
        with_rt.headers.insert(
            1,
            Header {
                key: "biz_rt".into(),
                value: "99".into(),
            },
        );
        assert_eq!(Frame::ack(&with_rt, 3, &AckPayload::Ok), ack);
    }

    #[test]
    fn ack_payloads_round_trip() {
        let data = br#"{"toast":{"type":"info","content":"ok"}}"#.to_vec();
        let json = AckPayload::OkWithData(data.clone()).to_json();
        assert_eq!(AckPayload::parse(&json).unwrap(), (200, Some(data)));
        assert_eq!(
            AckPayload::parse(&AckPayload::Ok.to_json()).unwrap(),
            (200, None)
        );
        assert_eq!(
            AckPayload::parse(&AckPayload::Failed.to_json()).unwrap(),
            (500, None)
        );
        assert!(AckPayload::parse(b"not json").is_err());
        assert!(AckPayload::parse(br#"{"data":"x"}"#).is_err());
    }
}
