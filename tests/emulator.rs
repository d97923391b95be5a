//! The emulator against a minimal client written here: raw HTTP for discovery and
//! tokio-tungstenite for the WebSocket. Loopback only, port 0; waits are for conditions
//! (the few "nothing arrives" checks use a short bounded wait, which is the only way to
//! observe an absence).

use std::time::{Duration, Instant};

use feishu_transport::core::frame::{AckPayload, Frame, Header, METHOD_CONTROL, METHOD_DATA};
use feishu_transport::emulator::{
    AppCredentials, ClientConfig, DiscoveryFault, DiscoveryFaultKind, Emulator, EmulatorError,
    EmulatorOptions, FragmentOrder, PushManyOptions, PushOptions, DEFAULT_APP_ID,
    DEFAULT_APP_SECRET,
};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);
/// How long an "it does not happen" check watches.
const QUIET: Duration = Duration::from_millis(300);

async fn start(opts: EmulatorOptions) -> Emulator {
    Emulator::start(opts).await.expect("emulator starts")
}

async fn start_default() -> Emulator {
    start(EmulatorOptions::default()).await
}

/// One HTTP exchange on a fresh socket: (status, headers, body).
async fn http(port: u16, request: String) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(&raw).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial response: {raw:?}"),
    };
    let hs = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).to_string(),
            )
        })
        .collect();
    (
        resp.code.unwrap(),
        hs,
        String::from_utf8_lossy(&raw[len..]).to_string(),
    )
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nlocale: zh\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn discover_raw(emu: &Emulator, app_id: &str, secret: &str) -> (u16, String) {
    let body = serde_json::json!({"AppID": app_id, "AppSecret": secret}).to_string();
    let (status, _, body) = http(emu.port(), post("/callback/ws/endpoint", &body)).await;
    (status, body)
}

async fn discover(emu: &Emulator) -> String {
    let (status, body) = discover_raw(emu, DEFAULT_APP_ID, DEFAULT_APP_SECRET).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], 0, "{body}");
    v["data"]["URL"].as_str().unwrap().to_string()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Client {
    ws: Ws,
    device_id: String,
    service_id: i32,
}

fn query_param(url: &str, key: &str) -> String {
    let parsed = url::Url::parse(url).unwrap();
    parsed
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn connect_url(url: &str) -> Result<Client, tungstenite::Error> {
    let (ws, _) = tokio_tungstenite::connect_async(url).await?;
    Ok(Client {
        ws,
        device_id: query_param(url, "device_id"),
        service_id: query_param(url, "service_id").parse().unwrap(),
    })
}

async fn connect(emu: &Emulator) -> Client {
    let url = discover(emu).await;
    connect_url(&url).await.expect("handshake")
}

impl Client {
    /// The next WebSocket message, skipping nothing.
    async fn next_message(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a message in time")
    }

    async fn next_frame(&mut self) -> Frame {
        loop {
            match self.next_message().await {
                Some(Ok(Message::Binary(b))) => return Frame::decode_bytes(&b).unwrap(),
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    /// Reassembles the next event: (payload, the completing frame, frames seen).
    async fn next_event(&mut self) -> (Vec<u8>, Frame, Vec<Frame>) {
        let mut slots: Vec<Option<Vec<u8>>> = Vec::new();
        let mut seen = Vec::new();
        loop {
            let f = self.next_frame().await;
            assert_eq!(f.method, METHOD_DATA, "{f:?}");
            let sum: usize = f.header("sum").unwrap().parse().unwrap();
            let seq: usize = f.header("seq").unwrap().parse().unwrap();
            if slots.is_empty() {
                slots = vec![None; sum];
            }
            slots[seq] = f.payload.clone();
            seen.push(f.clone());
            if slots.iter().all(Option::is_some) {
                let payload = slots.into_iter().flatten().flatten().collect();
                return (payload, f, seen);
            }
        }
    }

    async fn send_frame(&mut self, f: &Frame) {
        self.ws
            .send(Message::Binary(f.encode_to_vec().into()))
            .await
            .unwrap();
    }

    async fn ack(&mut self, f: &Frame, payload: AckPayload) {
        self.send_frame(&Frame::ack(f, 3, &payload)).await;
    }

    async fn ping(&mut self) {
        self.send_frame(&Frame::ping(self.service_id)).await;
    }

    /// Asserts that nothing arrives for a short while.
    async fn expect_quiet(&mut self) {
        if let Ok(m) = tokio::time::timeout(QUIET, self.ws.next()).await {
            panic!("expected silence, got {m:?}");
        }
    }
}

fn sample(name: &str) -> Vec<u8> {
    feishu_transport::emulator::sample(name)
        .unwrap()
        .as_bytes()
        .to_vec()
}

// ----- discovery -----------------------------------------------------------------------

#[tokio::test]
async fn discovery_issues_a_feishu_shaped_url() {
    let emu = start_default().await;
    let (status, body) = discover_raw(&emu, DEFAULT_APP_ID, DEFAULT_APP_SECRET).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], 0);
    assert_eq!(v["msg"], "ok");
    assert_eq!(
        v["data"]["ClientConfig"],
        serde_json::json!({"PingInterval":120,"ReconnectCount":-1,"ReconnectInterval":120,"ReconnectNonce":30})
    );
    let url = v["data"]["URL"].as_str().unwrap();
    let prefix = format!(
        "ws://127.0.0.1:{}/ws/v2?fpid=493&aid=552564&device_id=",
        emu.port()
    );
    assert!(url.starts_with(&prefix), "{url}");
    assert!(query_param(url, "device_id").parse::<u64>().is_ok());
    let key = query_param(url, "access_key");
    assert_eq!(key.len(), 32);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(query_param(url, "service_id"), "33554678");
    assert_eq!(query_param(url, "ticket").len(), 36);
    assert_eq!(emu.domain(), format!("http://127.0.0.1:{}", emu.port()));
    // every call issues a fresh URL
    assert_ne!(discover(&emu).await, url);
    assert_eq!(emu.stats().discovery_calls, 2);
    emu.close().await;
}

#[tokio::test]
async fn discovery_refuses_bad_credentials_bodies_and_paths() {
    let emu = start_default().await;
    let (status, body) = discover_raw(&emu, DEFAULT_APP_ID, "wrong").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["code"].as_i64(), v["msg"].as_str()),
        (Some(514), Some("auth failed"))
    );
    assert_eq!(v["data"]["URL"], "");

    let (_, body) = discover_raw(&emu, "cli_0000000000000000", DEFAULT_APP_SECRET).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"].as_i64(), Some(1_000_040_346));
    assert_eq!(v["msg"], "app_id is invalid");

    let (status, _, _) = http(emu.port(), post("/callback/ws/endpoint", "{nope")).await;
    assert_eq!(status, 400);
    let (status, _, _) = http(emu.port(), post("/somewhere/else", "{}")).await;
    assert_eq!(status, 404);
    emu.close().await;
}

#[tokio::test]
async fn discovery_accepts_several_apps_and_keep_alive() {
    let emu = start(EmulatorOptions {
        apps: vec![
            AppCredentials {
                app_id: "cli_1111111111111111".into(),
                app_secret: "one".into(),
            },
            AppCredentials {
                app_id: "cli_2222222222222222".into(),
                app_secret: "two".into(),
            },
        ],
        ..EmulatorOptions::default()
    })
    .await;
    // two requests on one keep-alive socket, the second with a chunked body
    let mut s = TcpStream::connect(("127.0.0.1", emu.port())).await.unwrap();
    let b1 = r#"{"AppID":"cli_1111111111111111","AppSecret":"one"}"#;
    let req1 = format!(
        "POST /callback/ws/endpoint HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b1}",
        b1.len()
    );
    let b2 = r#"{"AppID":"cli_2222222222222222","AppSecret":"two","ClientAssertion":""}"#;
    let req2 = format!(
        "POST /callback/ws/endpoint HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{b2}\r\n0\r\n\r\n",
        b2.len()
    );
    s.write_all(req1.as_bytes()).await.unwrap();
    s.write_all(req2.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    assert_eq!(raw.matches(r#""code":0"#).count(), 2, "{raw}");
    emu.close().await;
}

#[tokio::test]
async fn discovery_faults_apply_in_order_then_clear() {
    let emu = start_default().await;
    let port = emu.port();
    let body =
        serde_json::json!({"AppID": DEFAULT_APP_ID, "AppSecret": DEFAULT_APP_SECRET}).to_string();
    let req = post("/callback/ws/endpoint", &body);

    emu.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::Code {
            code: 1,
            msg: "system busy".into(),
        },
    });
    emu.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::HttpStatus(503),
    });
    emu.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::Body("<html>not json</html>".into()),
    });
    emu.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::Url("".into()),
    });
    emu.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::Delay(Duration::from_millis(200)),
    });

    let (s, _, b) = http(port, req.clone()).await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!((s, v["code"].as_i64()), (200, Some(1)));

    let (s, _, _) = http(port, req.clone()).await;
    assert_eq!(s, 503);

    let (s, _, b) = http(port, req.clone()).await;
    assert_eq!((s, b.as_str()), (200, "<html>not json</html>"));

    let (_, _, b) = http(port, req.clone()).await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["code"].as_i64(), v["data"]["URL"].as_str()),
        (Some(0), Some(""))
    );

    let t0 = Instant::now();
    let (_, _, b) = http(port, req.clone()).await;
    assert!(t0.elapsed() >= Duration::from_millis(200));
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert!(v["data"]["URL"].as_str().unwrap().starts_with("ws://"));

    // Hang: the request is read and never answered; the socket stays open.
    emu.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::Hang,
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    assert!(tokio::time::timeout(QUIET, s.read(&mut buf)).await.is_err());
    // the next request is answered normally
    let _ = discover(&emu).await;

    emu.fail_discovery(DiscoveryFault {
        count: 5,
        kind: DiscoveryFaultKind::HttpStatus(500),
    });
    emu.clear_faults();
    let _ = discover(&emu).await;
    assert_eq!(emu.stats().discovery_faults, 6);
    drop(s);
    emu.close().await;
}

// ----- handshake -------------------------------------------------------------------------

fn handshake_header(err: &tungstenite::Error, name: &str) -> Option<String> {
    match err {
        tungstenite::Error::Http(resp) => resp
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string()),
        _ => None,
    }
}

fn http_status(err: &tungstenite::Error) -> Option<u16> {
    match err {
        tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

#[tokio::test]
async fn tickets_are_single_use() {
    let emu = start_default().await;
    let url = discover(&emu).await;
    let _c = connect_url(&url).await.unwrap();
    let err = connect_url(&url)
        .await
        .err()
        .expect("a reused ticket is refused");
    assert_eq!(
        handshake_header(&err, "Handshake-Status").as_deref(),
        Some("514")
    );
    assert_eq!(
        handshake_header(&err, "Handshake-Msg").as_deref(),
        Some("invalid ticket")
    );
    // a forged ticket too
    let forged = url.replace("ticket=", "ticket=x");
    assert!(connect_url(&forged).await.is_err());
    let s = emu.stats();
    assert_eq!((s.handshakes, s.handshakes_rejected), (1, 2));
    emu.close().await;
}

#[tokio::test]
async fn the_connection_limit_is_enforced() {
    let emu = start(EmulatorOptions {
        max_connections_per_app: 1,
        ..EmulatorOptions::default()
    })
    .await;
    let first = connect(&emu).await;
    let url = discover(&emu).await;
    let err = connect_url(&url).await.err().unwrap();
    assert_eq!(
        handshake_header(&err, "Handshake-Status").as_deref(),
        Some("514")
    );
    assert_eq!(
        handshake_header(&err, "Handshake-Autherrcode").as_deref(),
        Some("1000040350")
    );
    assert_eq!(
        handshake_header(&err, "Handshake-Msg").as_deref(),
        Some("the number of connections exceeded the limit")
    );
    // once the first is gone, a new one fits
    drop(first);
    wait_live(&emu, 0).await;
    let _second = connect(&emu).await;
    emu.close().await;
}

/// Waits until exactly `n` connections are live.
async fn wait_live(emu: &Emulator, n: usize) {
    let deadline = Instant::now() + WAIT;
    while emu.connections().len() != n {
        assert!(
            Instant::now() < deadline,
            "live connections never became {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn handshake_faults_reject_hang_and_accept_then_close() {
    let emu = start_default().await;
    emu.reject_handshakes(1, 403, Some(403), Some("forbidden".into()), None);
    let err = connect_url(&discover(&emu).await).await.err().unwrap();
    assert_eq!(http_status(&err), Some(403));
    assert_eq!(
        handshake_header(&err, "Handshake-Status").as_deref(),
        Some("403")
    );
    assert_eq!(
        handshake_header(&err, "Handshake-Msg").as_deref(),
        Some("forbidden")
    );

    emu.reject_handshakes(1, 500, None, None, None);
    let err = connect_url(&discover(&emu).await).await.err().unwrap();
    assert_eq!(http_status(&err), Some(500));
    assert_eq!(handshake_header(&err, "Handshake-Status"), None);

    emu.hang_handshakes(1);
    let url = discover(&emu).await;
    assert!(tokio::time::timeout(QUIET, connect_url(&url))
        .await
        .is_err());

    emu.accept_and_close(Some(1));
    let mut c = connect(&emu).await;
    match c.next_message().await {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        other => panic!("expected a close, got {other:?}"),
    }
    // faults used up: a normal connection
    let mut c = connect(&emu).await;
    c.ping().await;
    assert_eq!(c.next_frame().await.frame_type(), "pong");

    emu.accept_and_close(None);
    for _ in 0..2 {
        let mut c = connect(&emu).await;
        assert!(matches!(
            c.next_message().await,
            Some(Ok(Message::Close(_))) | None | Some(Err(_))
        ));
    }
    emu.clear_faults();
    let _c = connect(&emu).await;
    assert_eq!(emu.stats().handshakes_rejected, 2);
    emu.close().await;
}

// ----- pings -------------------------------------------------------------------------------

#[tokio::test]
async fn ping_gets_a_pong_with_the_client_config() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    c.ping().await;
    let pong = c.next_frame().await;
    assert_eq!((pong.method, pong.frame_type()), (METHOD_CONTROL, "pong"));
    let cfg: serde_json::Value = serde_json::from_slice(pong.payload.as_deref().unwrap()).unwrap();
    assert_eq!(cfg["PingInterval"], 120);
    assert_eq!(cfg["ReconnectNonce"], 30);

    let new = ClientConfig {
        ping_interval: 5,
        reconnect_count: 3,
        reconnect_interval: 2,
        reconnect_nonce: 1,
    };
    emu.set_client_config(new);
    c.ping().await;
    let pong = c.next_frame().await;
    let cfg: ClientConfig = serde_json::from_slice(pong.payload.as_deref().unwrap()).unwrap();
    assert_eq!(cfg, new);

    let pings = emu.pings();
    assert_eq!(pings.len(), 2);
    assert_eq!(pings[0].service, 33554678);
    assert_eq!(pings[0].connection_id, c.device_id);
    let conns = emu.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!((conns[0].pings, conns[0].stalled), (2, false));
    assert_eq!(conns[0].app_id, DEFAULT_APP_ID);
    // RFC 6455 pings are answered too
    c.ws.send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    match c.next_message().await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"hi"),
        other => panic!("expected a pong, got {other:?}"),
    }
    emu.close().await;
}

// ----- events and acks -----------------------------------------------------------------------

#[tokio::test]
async fn plain_event_is_pushed_and_its_ack_recorded() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    emu.wait_for_connections(Some(DEFAULT_APP_ID), 1, WAIT)
        .await
        .unwrap();
    let payload = sample("message-receive-text");
    let id = emu.push_event(
        payload.clone(),
        PushOptions {
            trace_id: Some("trace-1".into()),
            ..PushOptions::default()
        },
    );
    let (got, last, frames) = c.next_event().await;
    assert_eq!(got, payload);
    assert_eq!(frames.len(), 1);
    let keys: Vec<&str> = last.headers.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(keys, ["type", "message_id", "sum", "seq", "trace_id"]);
    assert_eq!(last.header("type"), Some("event"));
    assert_eq!(last.header("message_id"), Some(id.as_str()));
    assert_eq!(
        (last.header("sum"), last.header("seq")),
        (Some("1"), Some("0"))
    );
    assert_eq!(last.header("trace_id"), Some("trace-1"));
    assert_eq!(last.service, 33554678);

    let reply = br#"{"toast":{"type":"info","content":"ok"}}"#.to_vec();
    c.ack(&last, AckPayload::OkWithData(reply.clone())).await;
    let ack = emu.wait_for_ack(&id, Some(200), WAIT).await.unwrap();
    assert_eq!(ack.code, 200);
    assert_eq!(ack.data, Some(reply));
    assert_eq!(
        ack.event_id.as_deref(),
        Some("c42aaedb8ee7d8464cbbc212d6675dc3")
    );
    assert_eq!(ack.biz_rt, Some(3));
    assert_eq!(ack.delivery, 1);
    assert_eq!(ack.connection_id, c.device_id);
    assert_eq!(
        ack.headers.last().unwrap(),
        &("biz_rt".to_string(), "3".to_string())
    );
    emu.wait_for_all_acked(WAIT).await.unwrap();
    let s = emu.stats();
    assert_eq!(
        (s.pushed, s.deliveries, s.acks, s.acks_ok, s.pending),
        (1, 1, 1, 1, 0)
    );
    assert_eq!(emu.acks().len(), 1);
    emu.close().await;
}

#[tokio::test]
async fn fragmented_events_reassemble_in_every_order() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    let payload = sample("message-receive-post");
    for order in [
        FragmentOrder::InOrder,
        FragmentOrder::Reverse,
        FragmentOrder::Shuffle,
    ] {
        let id = emu.push_event(
            payload.clone(),
            PushOptions {
                fragments: 4,
                order,
                ..PushOptions::default()
            },
        );
        let (got, last, frames) = c.next_event().await;
        assert_eq!(got, payload, "{order:?}");
        assert_eq!(frames.len(), 4);
        let seqs: Vec<&str> = frames.iter().map(|f| f.header("seq").unwrap()).collect();
        if order == FragmentOrder::Reverse {
            assert_eq!(seqs, ["3", "2", "1", "0"]);
        }
        if order == FragmentOrder::InOrder {
            assert_eq!(seqs, ["0", "1", "2", "3"]);
        }
        assert!(frames
            .iter()
            .all(|f| f.header("sum") == Some("4") && f.header("message_id") == Some(id.as_str())));
        c.ack(&last, AckPayload::Ok).await;
        emu.wait_for_ack(&id, Some(200), WAIT).await.unwrap();
    }
    // more fragments than bytes: clamped to one byte each
    let id = emu.push_event(
        b"{}".to_vec(),
        PushOptions {
            fragments: 10,
            ..PushOptions::default()
        },
    );
    let (got, last, frames) = c.next_event().await;
    assert_eq!((got.as_slice(), frames.len()), (&b"{}"[..], 2));
    c.ack(&last, AckPayload::Ok).await;
    emu.wait_for_ack(&id, None, WAIT).await.unwrap();
    emu.wait_for_all_acked(WAIT).await.unwrap();
    emu.close().await;
}

#[tokio::test]
async fn a_failed_ack_is_redelivered_until_200() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    let id = emu.push_event(sample("reaction-created"), PushOptions::default());
    let (_, first, _) = c.next_event().await;
    c.ack(&first, AckPayload::Failed).await;
    let (payload, second, _) = c.next_event().await;
    assert_eq!(payload, sample("reaction-created"));
    assert_eq!(second.header("message_id"), Some(id.as_str()));
    assert_ne!(second.header("trace_id"), first.header("trace_id"));
    assert_ne!(second.log_id, first.log_id);
    assert_ne!(second.seq_id, first.seq_id);
    c.ack(&second, AckPayload::Ok).await;
    emu.wait_for_all_acked(WAIT).await.unwrap();
    let acks = emu.acks();
    assert_eq!(
        acks.iter()
            .map(|a| (a.code, a.delivery))
            .collect::<Vec<_>>(),
        [(500, 1), (200, 2)]
    );
    assert_eq!(emu.wait_for_ack(&id, None, WAIT).await.unwrap().code, 500);
    let s = emu.stats();
    assert_eq!(
        (s.redeliveries, s.acks_failed, s.acks_ok, s.pending),
        (1, 1, 1, 0)
    );
    // a late duplicate ack is still recorded, but changes nothing
    c.ack(&first, AckPayload::Ok).await;
    let deadline = Instant::now() + WAIT;
    while emu.acks().len() < 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(emu.acks()[2].delivery, 1);
    assert_eq!(emu.stats().deliveries, 2);
    emu.close().await;
}

#[tokio::test]
async fn an_unacked_event_is_redelivered_after_the_deadline_then_given_up() {
    let emu = start(EmulatorOptions {
        ack_deadline: Duration::from_millis(200),
        max_redeliveries: 2,
        ..EmulatorOptions::default()
    })
    .await;
    let mut c = connect(&emu).await;
    // Taken before the push, so the deadline (armed at the push) is surely after it.
    let t0 = Instant::now();
    let id = emu.push_event(sample("bot-menu"), PushOptions::default());
    let (_, first, _) = c.next_event().await;
    let (_, second, _) = c.next_event().await;
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(second.header("message_id"), first.header("message_id"));
    c.ack(&second, AckPayload::Ok).await;
    let ack = emu.wait_for_ack(&id, Some(200), WAIT).await.unwrap();
    assert_eq!(ack.delivery, 2);
    emu.wait_for_all_acked(WAIT).await.unwrap();

    // never acked: 1 + 2 deliveries, then given up (and still pending)
    let id2 = emu.push_event(sample("bot-menu"), PushOptions::default());
    for _ in 0..3 {
        let (_, f, _) = c.next_event().await;
        assert_eq!(f.header("message_id"), Some(id2.as_str()));
    }
    let deadline = Instant::now() + WAIT;
    while emu.stats().given_up == 0 {
        assert!(Instant::now() < deadline, "never given up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.expect_quiet().await;
    let s = emu.stats();
    assert_eq!((s.pending, s.given_up, s.redeliveries), (1, 1, 3));
    let err = emu
        .wait_for_all_acked(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, EmulatorError::Timeout(_)));
    let err = emu
        .wait_for_ack(&id2, None, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&id2), "{err}");
    emu.close().await;
}

#[tokio::test]
async fn events_spread_over_the_connections_of_an_app() {
    let emu = start_default().await;
    let mut a = connect(&emu).await;
    let mut b = connect(&emu).await;
    emu.wait_for_connections(None, 2, WAIT).await.unwrap();
    let n = 40;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(emu.push_event(sample("message-receive-text"), PushOptions::default()));
    }
    // Each client acks whatever it gets until all are acked.
    let serve = |mut c: Client| async move {
        let mut got = 0usize;
        loop {
            let next = tokio::time::timeout(QUIET * 2, c.next_frame_raw()).await;
            match next {
                Ok(Some(f)) => {
                    c.ack(&f, AckPayload::Ok).await;
                    got += 1;
                }
                _ => return (got, c),
            }
        }
    };
    let ((got_a, ca), (got_b, cb)) = tokio::join!(serve(a), serve(b));
    a = ca;
    b = cb;
    assert_eq!(got_a + got_b, n);
    assert!(got_a > 0 && got_b > 0, "cluster mode: {got_a} / {got_b}");
    emu.wait_for_all_acked(WAIT).await.unwrap();
    let by_conn: std::collections::HashSet<String> =
        emu.acks().into_iter().map(|a| a.connection_id).collect();
    assert_eq!(by_conn.len(), 2);
    // a pinned push goes where it is told
    let id = emu.push_event(
        b"{}".to_vec(),
        PushOptions {
            connection_id: Some(b.device_id.clone()),
            ..PushOptions::default()
        },
    );
    let (_, f, _) = b.next_event().await;
    assert_eq!(f.header("message_id"), Some(id.as_str()));
    b.ack(&f, AckPayload::Ok).await;
    a.expect_quiet().await;
    emu.close().await;
}

impl Client {
    async fn next_frame_raw(&mut self) -> Option<Frame> {
        match self.ws.next().await {
            Some(Ok(Message::Binary(b))) => Frame::decode_bytes(&b).ok(),
            _ => None,
        }
    }
}

#[tokio::test]
async fn events_pushed_with_no_connection_wait_for_one() {
    let emu = start_default().await;
    let id = emu.push_event(sample("bot-added"), PushOptions::default());
    assert_eq!(emu.stats().queued, 1);
    let mut c = connect(&emu).await;
    let (payload, f, _) = c.next_event().await;
    assert_eq!(payload, sample("bot-added"));
    c.ack(&f, AckPayload::Ok).await;
    emu.wait_for_ack(&id, Some(200), WAIT).await.unwrap();
    assert_eq!(emu.stats().queued, 0);
    emu.close().await;
}

#[tokio::test]
async fn card_frames_are_sent_once_and_not_tracked() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    emu.push_event(
        sample("card-action-trigger"),
        PushOptions {
            frame_type: "card".into(),
            ..PushOptions::default()
        },
    );
    let (_, f, _) = c.next_event().await;
    assert_eq!(f.header("type"), Some("card"));
    let s = emu.stats();
    assert_eq!((s.pushed, s.pending, s.deliveries), (0, 0, 1));
    emu.wait_for_all_acked(WAIT).await.unwrap();
    emu.close().await;
}

// ----- connection faults ----------------------------------------------------------------------

#[tokio::test]
async fn drop_connections_with_and_without_a_close_frame() {
    let emu = start_default().await;
    let mut a = connect(&emu).await;
    let mut b = connect(&emu).await;
    emu.wait_for_connections(None, 2, WAIT).await.unwrap();
    assert_eq!(emu.drop_connections(Some(&a.device_id), true), 1);
    match a.next_message().await {
        Some(Ok(Message::Close(Some(cf)))) => assert_eq!(u16::from(cf.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
    wait_live(&emu, 1).await;
    assert_eq!(emu.drop_connections(None, false), 1);
    match b.next_message().await {
        // no close frame: the stream just ends (or errors: reset without closing handshake)
        None | Some(Err(_)) => {}
        other => panic!("expected an abrupt end, got {other:?}"),
    }
    wait_live(&emu, 0).await;
    assert_eq!(emu.drop_connections(Some("nope"), true), 0);
    assert_eq!(emu.stats().connections_total, 2);
    emu.close().await;
}

#[tokio::test]
async fn a_stalled_connection_goes_silent_and_its_events_are_redelivered_elsewhere() {
    let emu = start(EmulatorOptions {
        ack_deadline: Duration::from_millis(200),
        // a re-delivery may pick the stalled connection again; leave room for that
        max_redeliveries: 30,
        ..EmulatorOptions::default()
    })
    .await;
    let mut a = connect(&emu).await;
    assert_eq!(emu.stall(None), 1);
    assert!(emu.connections()[0].stalled);
    a.ping().await;
    a.expect_quiet().await;
    let id = emu.push_event(
        sample("message-receive-text"),
        PushOptions {
            connection_id: Some(a.device_id.clone()),
            ..PushOptions::default()
        },
    );
    // a new connection is not stalled, and gets the re-delivery
    let mut b = connect(&emu).await;
    b.ping().await;
    assert_eq!(b.next_frame().await.frame_type(), "pong");
    // the re-delivery may pick the stalled one again; keep going until b has it
    let (_, f, _) = b.next_event().await;
    assert_eq!(f.header("message_id"), Some(id.as_str()));
    b.ack(&f, AckPayload::Ok).await;
    let ack = emu.wait_for_ack(&id, Some(200), WAIT).await.unwrap();
    assert!(ack.delivery >= 2);
    assert_eq!(ack.connection_id, b.device_id);
    // the stalled socket is still open
    assert_eq!(emu.connections().len(), 2);
    assert_eq!(emu.drop_connections(Some(&a.device_id), false), 1);
    wait_live(&emu, 1).await;
    emu.close().await;
}

#[tokio::test]
async fn hostile_frames_reach_the_client_verbatim() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    emu.wait_for_connections(None, 1, WAIT).await.unwrap();
    let frame = Frame {
        seq_id: 1,
        log_id: 2,
        service: 3,
        method: METHOD_DATA,
        headers: vec![
            Header {
                key: "type".into(),
                value: "event".into(),
            },
            Header {
                key: "sum".into(),
                value: "-1".into(),
            },
        ],
        payload: Some(vec![0xff, 0xfe]),
        ..Default::default()
    };
    assert_eq!(emu.send_frame(None, frame.clone()), 1);
    assert_eq!(c.next_frame().await, frame);
    assert_eq!(emu.send_raw(Some(&c.device_id), vec![1, 2, 3]), 1);
    match c.next_message().await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &[1, 2, 3]),
        other => panic!("{other:?}"),
    }
    assert_eq!(emu.send_text(None, "hello"), 1);
    match c.next_message().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "hello"),
        other => panic!("{other:?}"),
    }
    emu.close().await;
}

#[tokio::test]
async fn bad_frames_from_the_client_are_counted_and_survived() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    c.ws.send(Message::Text("hi".into())).await.unwrap();
    c.ws.send(Message::Binary(vec![0x0a, 0x01, 0x00].into()))
        .await
        .unwrap();
    let mut not_json = Frame::ping(1);
    not_json.method = METHOD_DATA;
    not_json.headers[0].value = "event".into();
    not_json.payload = Some(b"not json".to_vec());
    c.send_frame(&not_json).await;
    c.ping().await;
    assert_eq!(c.next_frame().await.frame_type(), "pong");
    assert_eq!(emu.stats().bad_frames_received, 3);
    // an ack for a message the emulator never pushed
    let mut unknown = Frame::ping(1);
    unknown.method = METHOD_DATA;
    unknown.headers = vec![Header {
        key: "message_id".into(),
        value: "nope".into(),
    }];
    unknown.payload = Some(br#"{"code":200}"#.to_vec());
    c.send_frame(&unknown).await;
    let ack = emu.wait_for_ack("nope", None, WAIT).await.unwrap();
    assert_eq!(ack.delivery, 0);
    assert_eq!(emu.stats().acks_unknown, 1);
    emu.close().await;
}

#[tokio::test]
async fn push_many_with_flow_control_is_fully_acked() {
    let emu = start_default().await;
    let mut c = connect(&emu).await;
    emu.wait_for_connections(None, 1, WAIT).await.unwrap();
    let client = tokio::spawn(async move {
        let mut ids = std::collections::HashSet::new();
        while ids.len() < 310 {
            let (payload, f, _) = c.next_event().await;
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            ids.insert(v["header"]["event_id"].as_str().unwrap().to_string());
            c.ack(&f, AckPayload::Ok).await;
        }
        ids.len()
    });
    let ids = emu
        .push_many(PushManyOptions {
            count: 300,
            payload_bytes: 600,
            fragments: 2,
            max_in_flight: Some(8),
            rate_per_sec: Some(20_000.0),
            ..PushManyOptions::default()
        })
        .await;
    assert_eq!(ids.len(), 300);
    // a second call must not repeat the first call's event ids
    let more = emu
        .push_many(PushManyOptions {
            count: 10,
            ..PushManyOptions::default()
        })
        .await;
    assert_eq!(more.len(), 10);
    emu.wait_for_all_acked(WAIT).await.unwrap();
    assert_eq!(client.await.unwrap(), 310, "distinct event ids");
    let s = emu.stats();
    assert_eq!(
        (s.pushed, s.acks_ok, s.pending, s.frames_sent),
        (310, 310, 0, 610)
    );
    emu.close().await;
}

#[tokio::test]
async fn close_is_idempotent_and_closes_everything() {
    let emu = start_default().await;
    let port = emu.port();
    let mut c = connect(&emu).await;
    let clone = emu.clone();
    let waiter = tokio::spawn(async move { clone.wait_for_connections(None, 5, WAIT).await });
    emu.close().await;
    emu.close().await;
    assert_eq!(waiter.await.unwrap(), Err(EmulatorError::Closed));
    match c.next_message().await {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    // pushing after close is harmless
    let _ = emu.push_event(b"{}".to_vec(), PushOptions::default());
}

#[tokio::test]
async fn samples_are_all_there() {
    let names = feishu_transport::emulator::sample_names();
    assert!(names.contains(&"message-receive-text"));
    assert!(names.contains(&"card-action-trigger"));
    assert!(names.contains(&"reaction-created"));
    assert_eq!(names.len(), 10);
}

#[tokio::test]
async fn history_is_bounded() {
    let emu = start(EmulatorOptions {
        max_history: 5,
        ..EmulatorOptions::default()
    })
    .await;
    let mut c = connect(&emu).await;
    let mut last = String::new();
    for _ in 0..30 {
        last = emu.push_event(sample("bot-menu"), PushOptions::default());
        let (_, f, _) = c.next_event().await;
        c.ack(&f, AckPayload::Ok).await;
        emu.wait_for_ack(&last, Some(200), WAIT).await.unwrap();
    }
    emu.wait_for_all_acked(WAIT).await.unwrap();
    let acks = emu.acks();
    assert!(acks.len() >= 5 && acks.len() < 10, "{}", acks.len());
    assert_eq!(acks.last().unwrap().message_id, last);
    let s = emu.stats();
    assert_eq!((s.acks_ok, s.pending), (30, 0));
    emu.close().await;
}

#[tokio::test]
async fn hostile_http_is_refused_without_harm() {
    let emu = start_default().await;
    // a chunk size that would overflow a naive length check
    let req = "POST /callback/ws/endpoint HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
    let (status, _, _) = http(emu.port(), req.to_string()).await;
    assert_eq!(status, 413);
    let (status, _, _) = http(
        emu.port(),
        "POST /callback/ws/endpoint HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _, _) = http(emu.port(), "\x16\x03\x01 not http\r\n\r\n".into()).await;
    assert_eq!(status, 400);
    // a plain GET of the WebSocket path, without the upgrade
    let (status, _, _) = http(
        emu.port(),
        "GET /ws/v2?ticket=x HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 400);
    // "forever" timeouts do not overflow
    emu.wait_for_connections(None, 0, Duration::MAX)
        .await
        .unwrap();
    let _ = discover(&emu).await;
    emu.close().await;
}
