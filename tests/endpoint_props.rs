//! Property tests of the discovery-answer parser: whatever the endpoint (or anything in
//! between) answers, parsing returns a typed result instead of panicking, and a code-0
//! answer is only accepted with a WebSocket URL. `PROPTEST_CASES` overrides the count.

use feishu_transport::core::endpoint::{parse_response, ServerConfig};
use feishu_transport::core::error::ErrorCode;
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// JSON-ish bodies: real shapes with random values, so the parser's branches are reached.
fn body() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() {
            f.to_string()
        } else {
            "1e999".into()
        }),
        "\\PC{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"wss://h/ws?service_id=7&device_id=1\"".to_string()),
        Just("\"ws://127.0.0.1:1/ws?service_id=99999999999\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    (scalar.clone(), scalar.clone(), scalar.clone(), scalar).prop_map(|(code, url, ping, nonce)| {
        format!(r#"{{"code":{code},"msg":"m","data":{{"URL":{url},"ClientConfig":{{"PingInterval":{ping},"ReconnectNonce":{nonce}}}}}}}"#)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(10_000)))]

    #[test]
    fn random_bytes_never_panic(status in any::<u16>(), bytes in proptest::collection::vec(any::<u8>(), 0..512), plain in any::<bool>()) {
        let _ = parse_response(status, &bytes, plain);
        let _ = ServerConfig::from_pong(&bytes);
    }

    #[test]
    fn structured_answers_are_classified(b in body(), plain in any::<bool>()) {
        match parse_response(200, b.as_bytes(), plain) {
            Ok(ep) => {
                prop_assert!(ep.url.starts_with("wss://") || (plain && ep.url.starts_with("ws://")), "{}", b);
                if let Some(p) = ep.config.ping_interval {
                    prop_assert!(!p.is_zero());
                }
            }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                if e.code == ErrorCode::ProtocolError {
                    prop_assert!(!e.terminal);
                }
            }
        }
    }
}
