//! The core transport against the emulator, without Node: events and acks, failures and
//! re-delivery, reconnects, liveness, error classification, stopping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feishu_transport::core::backoff::BackoffPolicy;
use feishu_transport::core::config::{LogLevel, TransportConfig};
use feishu_transport::core::endpoint::Domain;
use feishu_transport::core::error::{ErrorCode, TransportError};
use feishu_transport::core::events::{
    EventHandler, HandlerResult, InboundEvent, Observer, OwnedEvent, Reply,
};
use feishu_transport::core::status::{State, StatusSnapshot};
use feishu_transport::core::supervisor::{RunOutcome, StopReason, Transport};
use feishu_transport::emulator::{
    DiscoveryFault, DiscoveryFaultKind, Emulator, EmulatorOptions, PushOptions,
};

/// What a test handler does with one event; it answers when the future completes.
type HandlerFuture = std::pin::Pin<Box<dyn std::future::Future<Output = HandlerResult> + Send>>;
type Behaviour = dyn Fn(&OwnedEvent, usize) -> HandlerFuture + Send + Sync;

/// A handler whose behaviour each test chooses; it records every event it sees.
struct TestHandler {
    seen: Mutex<Vec<OwnedEvent>>,
    calls: AtomicUsize,
    behaviour: Box<Behaviour>,
}

impl TestHandler {
    fn new(
        behaviour: impl Fn(&OwnedEvent, usize) -> HandlerFuture + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(TestHandler {
            seen: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            behaviour: Box::new(behaviour),
        })
    }
    fn ok() -> Arc<Self> {
        Self::new(|_, _| Box::pin(async { Ok(None) }))
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl EventHandler for TestHandler {
    fn handle(&self, event: InboundEvent<'_>, reply: Reply) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let event = event.to_owned();
        let fut = (self.behaviour)(&event, n);
        self.seen.lock().unwrap().push(event);
        tokio::spawn(async move { reply.send(fut.await) });
    }
}

#[derive(Default)]
struct TestObserver {
    errors: Mutex<Vec<TransportError>>,
    states: Mutex<Vec<State>>,
    logs: Mutex<Vec<(LogLevel, String)>>,
    ready: AtomicUsize,
    reconnected: AtomicUsize,
    reconnecting: Mutex<Vec<(u32, Duration)>>,
    /// The connection index of every ready, reconnecting and reconnected note, in order.
    notes: Mutex<Vec<(&'static str, usize)>>,
}

impl Observer for TestObserver {
    fn ready(&self, connection: usize) {
        self.ready.fetch_add(1, Ordering::SeqCst);
        self.notes.lock().unwrap().push(("ready", connection));
    }
    fn reconnecting(
        &self,
        connection: usize,
        attempt: u32,
        delay: Duration,
        _e: Option<&TransportError>,
    ) {
        self.reconnecting.lock().unwrap().push((attempt, delay));
        self.notes
            .lock()
            .unwrap()
            .push(("reconnecting", connection));
    }
    fn reconnected(&self, connection: usize) {
        self.reconnected.fetch_add(1, Ordering::SeqCst);
        self.notes.lock().unwrap().push(("reconnected", connection));
    }
    fn error(&self, e: &TransportError) {
        self.errors.lock().unwrap().push(e.clone());
    }
    fn status(&self, s: &StatusSnapshot) {
        self.states.lock().unwrap().push(s.state);
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.lock().unwrap().push((level, message.to_string()));
    }
}

impl TestObserver {
    fn error_codes(&self) -> Vec<ErrorCode> {
        self.errors.lock().unwrap().iter().map(|e| e.code).collect()
    }

    /// Whether a line at `level` containing `text` was logged.
    fn logged(&self, level: LogLevel, text: &str) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|(l, m)| *l == level && m.contains(text))
    }
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An emulator that re-delivers an event not acked within `ms`.
async fn emulator_redelivering_after(ms: u64) -> Emulator {
    Emulator::start(EmulatorOptions {
        ack_deadline: Duration::from_millis(ms),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn config(em: &Emulator) -> TransportConfig {
    let app = em.apps()[0].clone();
    let mut cfg = TransportConfig::new(
        app.app_id,
        app.app_secret,
        Domain::parse(Some(&em.domain())).unwrap(),
    );
    cfg.reconnect = Some(BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts: None,
    });
    cfg.timeouts.discovery = Duration::from_millis(1000);
    cfg.timeouts.handshake = Duration::from_millis(1000);
    cfg.timeouts.pong = Duration::from_millis(500);
    cfg.timeouts.close = Duration::from_millis(300);
    cfg.log_level = LogLevel::Debug;
    // Loopback tests must not depend on the machine's proxy variables.
    cfg.proxy = feishu_transport::core::proxy::ProxyMode::Direct;
    cfg
}

struct Running {
    transport: Arc<Transport>,
    observer: Arc<TestObserver>,
    run: tokio::task::JoinHandle<RunOutcome>,
}

fn start(cfg: TransportConfig, handler: Arc<impl EventHandler>) -> Running {
    crate_init();
    let transport = Arc::new(Transport::new(cfg).unwrap());
    let observer = Arc::new(TestObserver::default());
    let fut = transport.start(handler, observer.clone()).unwrap();
    Running {
        transport,
        observer,
        run: tokio::spawn(fut),
    }
}

fn crate_init() {
    feishu_transport::install_crypto_provider();
}

impl Running {
    async fn connected(&self) {
        let t = self.transport.clone();
        wait_until("connected", Duration::from_secs(5), || t.status().connected).await;
    }
    /// Waits until a socket other than `previous` is live.
    async fn connected_anew(&self, previous: &Option<String>) {
        let t = self.transport.clone();
        wait_until("a new connection", Duration::from_secs(5), || {
            let s = t.status();
            s.connected && s.connection_id != *previous
        })
        .await;
    }

    async fn stop(self) -> RunOutcome {
        self.transport.close(true, None).await;
        self.run.await.unwrap()
    }
}

fn event(id: &str) -> Vec<u8> {
    format!(r#"{{"schema":"2.0","header":{{"event_id":"{id}","event_type":"im.message.receive_v1"}},"event":{{"n":"{id}"}}}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_acked_with_the_handler_result() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let handler = TestHandler::new(|e, _| {
        let reply = e.event_type.clone();
        Box::pin(async move { Ok(reply.map(|t| format!(r#"{{"type":"{t}"}}"#))) })
    });
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let id = em.push_event(
        event("e1"),
        PushOptions {
            fragments: 3,
            ..Default::default()
        },
    );
    let ack = em
        .wait_for_ack(&id, None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ack.code, 200);
    assert_eq!(
        ack.data.as_deref(),
        Some(&br#"{"type":"im.message.receive_v1"}"#[..])
    );
    assert!(ack.biz_rt.unwrap() >= 0);
    let seen = handler.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].event_id.as_deref(), Some("e1"));
    assert_eq!(seen[0].message_id, id);
    assert_eq!(r.observer.ready.load(Ordering::SeqCst), 1);
    assert_eq!(r.stop().await, Ok(StopReason::Closed));
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handler_acks_500_and_the_redelivery_is_handled() {
    let em = emulator_redelivering_after(200).await;
    let handler = TestHandler::new(|_, n| {
        Box::pin(async move {
            if n == 1 {
                Err("boom".to_string())
            } else {
                Ok(None)
            }
        })
    });
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let id = em.push_event(event("e-fail"), PushOptions::default());
    assert_eq!(
        em.wait_for_ack(&id, Some(500), Duration::from_secs(5))
            .await
            .unwrap()
            .code,
        500
    );
    assert_eq!(
        em.wait_for_ack(&id, Some(200), Duration::from_secs(5))
            .await
            .unwrap()
            .delivery,
        2
    );
    assert_eq!(handler.calls(), 2);
    assert!(r.observer.logged(LogLevel::Error, "boom"));
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_of_a_handled_event_is_acked_without_calling_the_handler() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let handler =
        TestHandler::new(|_, _| Box::pin(async { Ok(Some(r#"{"card":1}"#.to_string())) }));
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let a = em.push_event(event("dup"), PushOptions::default());
    em.wait_for_ack(&a, None, Duration::from_secs(5))
        .await
        .unwrap();
    let b = em.push_event(event("dup"), PushOptions::default());
    let ack = em
        .wait_for_ack(&b, None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ack.data.as_deref(), Some(&br#"{"card":1}"#[..]));
    assert_eq!(handler.calls(), 1);
    assert_eq!(r.transport.status().counters.duplicates, 1);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_socket_is_detected_by_the_pong_timeout_and_replaced() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let mut cfg = config(&em);
    cfg.ping_interval = Some(Duration::from_millis(200));
    let r = start(cfg, TestHandler::ok());
    r.connected().await;
    let first = r.transport.status().connection_id;
    assert_eq!(em.stall(None), 1);
    let obs = r.observer.clone();
    wait_until("PONG_TIMEOUT", Duration::from_secs(5), || {
        obs.error_codes().contains(&ErrorCode::PongTimeout)
    })
    .await;
    r.connected_anew(&first).await;
    let id = em.push_event(event("after-stall"), PushOptions::default());
    // the stalled connection may have been picked; the re-delivery reaches the new one
    assert_eq!(
        em.wait_for_ack(&id, Some(200), Duration::from_secs(10))
            .await
            .unwrap()
            .code,
        200
    );
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_that_never_answers_times_out_and_is_retried() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    em.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::Hang,
    });
    let mut cfg = config(&em);
    cfg.timeouts.discovery = Duration::from_millis(200);
    let r = start(cfg, TestHandler::ok());
    r.connected().await;
    assert_eq!(r.observer.error_codes(), vec![ErrorCode::DiscoveryTimeout]);
    assert_eq!(em.stats().discovery_calls, 2);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_times_out_and_is_retried() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    em.hang_handshakes(1);
    let mut cfg = config(&em);
    cfg.timeouts.handshake = Duration::from_millis(200);
    let r = start(cfg, TestHandler::ok());
    r.connected().await;
    assert_eq!(r.observer.error_codes(), vec![ErrorCode::HandshakeTimeout]);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rejections_are_classified() {
    // 403: terminal FORBIDDEN, start() fails without retrying.
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    em.reject_handshakes(1, 403, Some(403), Some("forbidden".into()), None);
    let r = start(config(&em), TestHandler::ok());
    let err = r.run.await.unwrap().unwrap_err();
    assert_eq!((err.code, err.terminal), (ErrorCode::Forbidden, true));
    assert_eq!(em.stats().discovery_calls, 1);

    // 514 + 1000040350: CONNECTION_LIMIT, retried at the maximum delay.
    em.reject_handshakes(1, 514, Some(514), Some("limit".into()), Some(1_000_040_350));
    let r = start(config(&em), TestHandler::ok());
    r.connected().await;
    assert_eq!(r.observer.error_codes(), vec![ErrorCode::ConnectionLimit]);
    assert_eq!(
        r.observer.reconnecting.lock().unwrap()[0].1,
        Duration::from_millis(200)
    );
    r.stop().await.unwrap();

    // other statuses: HANDSHAKE_FAILED, retried.
    em.reject_handshakes(2, 500, Some(500), None, None);
    let r = start(config(&em), TestHandler::ok());
    r.connected().await;
    assert_eq!(
        r.observer.error_codes(),
        vec![ErrorCode::HandshakeFailed, ErrorCode::HandshakeFailed]
    );
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_codes_are_classified() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    for (code, want) in [(514, ErrorCode::AuthFailed), (403, ErrorCode::Forbidden)] {
        em.fail_discovery(DiscoveryFault {
            count: 1,
            kind: DiscoveryFaultKind::Code {
                code,
                msg: "x".into(),
            },
        });
        let r = start(config(&em), TestHandler::ok());
        let err = r.run.await.unwrap().unwrap_err();
        assert_eq!(
            (err.code, err.terminal, err.feishu_code),
            (want, true, Some(code))
        );
    }
    for kind in [
        DiscoveryFaultKind::Code {
            code: 1,
            msg: "busy".into(),
        },
        DiscoveryFaultKind::Code {
            code: 1_000_040_343,
            msg: "internal".into(),
        },
        DiscoveryFaultKind::HttpStatus(502),
        DiscoveryFaultKind::Body("<html>".into()),
        DiscoveryFaultKind::Url(String::new()),
        DiscoveryFaultKind::Url("https://example.invalid/ws".into()),
    ] {
        em.fail_discovery(DiscoveryFault {
            count: 1,
            kind: kind.clone(),
        });
        let r = start(config(&em), TestHandler::ok());
        r.connected().await;
        let errors = r.observer.errors.lock().unwrap().clone();
        assert_eq!(errors.len(), 1, "{kind:?}");
        assert!(!errors[0].terminal, "{kind:?}");
        if matches!(kind, DiscoveryFaultKind::Url(_)) {
            assert_eq!(errors[0].code, ErrorCode::ProtocolError);
        }
        r.stop().await.unwrap();
    }
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_and_closes_forever_meets_a_growing_backoff() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    em.accept_and_close(None);
    let mut cfg = config(&em);
    // From 250 ms: shorter delays are raised by the attempt pacer (at most 4 a second).
    cfg.reconnect = Some(BackoffPolicy {
        initial: Duration::from_millis(250),
        max: Duration::from_millis(1000),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts: Some(5),
    });
    let r = start(cfg, TestHandler::ok());
    let err = r.run.await.unwrap().unwrap_err();
    assert_eq!(err.code, ErrorCode::ReconnectExhausted);
    let delays: Vec<u64> = r
        .observer
        .reconnecting
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d.as_millis() as u64)
        .collect();
    assert_eq!(delays, vec![250, 500, 1000, 1000]);
    assert_eq!(em.stats().handshakes, 5);
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_connection_leaves_in_flight_events_unacked_and_reconnects() {
    let em = emulator_redelivering_after(300).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let handler = TestHandler::new(move |_, n| {
        let g = g.clone();
        Box::pin(async move {
            if n == 1 {
                g.notified().await;
            }
            Ok(None)
        })
    });
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let id = em.push_event(event("in-flight"), PushOptions::default());
    let h = handler.clone();
    wait_until("handler entered", Duration::from_secs(5), || h.calls() == 1).await;
    let first = r.transport.status().connection_id;
    assert!(r.transport.drop_connection("could not persist", None));
    r.connected_anew(&first).await;
    // The first handler finishes after its socket died: its ack must not appear on the new socket.
    gate.notify_one();
    let ack = em
        .wait_for_ack(&id, Some(200), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ack.delivery, 2, "the re-delivery is what gets acked");
    assert_ne!(Some(ack.connection_id.clone()), first);
    assert!(em.acks().iter().all(|a| a.delivery != 1));
    assert_eq!(r.transport.status().counters.reconnects, 1);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_in_flight_handlers_and_abort_reports_aborted() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let handler = TestHandler::new(|_, _| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Some("1".into()))
        })
    });
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let id = em.push_event(event("drain"), PushOptions::default());
    let h = handler.clone();
    wait_until("handler entered", Duration::from_secs(5), || h.calls() == 1).await;
    r.transport.close(false, Some(Duration::from_secs(5))).await;
    assert_eq!(r.run.await.unwrap(), Ok(StopReason::Closed));
    assert_eq!(
        em.wait_for_ack(&id, None, Duration::from_secs(1))
            .await
            .unwrap()
            .code,
        200
    );

    let r = start(config(&em), TestHandler::ok());
    r.connected().await;
    r.transport.abort().await;
    assert_eq!(r.run.await.unwrap(), Ok(StopReason::Aborted));
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_errors_never_carry_secrets() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    em.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::HttpStatus(500),
    });
    em.reject_handshakes(1, 500, Some(500), None, None);
    let secret = em.apps()[0].app_secret.clone();
    let r = start(config(&em), TestHandler::ok());
    r.connected().await;
    em.drop_connections(None, false);
    let obs = r.observer.clone();
    wait_until("reconnected", Duration::from_secs(5), || {
        obs.reconnected.load(Ordering::SeqCst) == 1
    })
    .await;
    let logs = r.observer.logs.lock().unwrap().clone();
    let errors = r.observer.errors.lock().unwrap().clone();
    assert!(!logs.is_empty());
    for text in logs
        .iter()
        .map(|(_, m)| m.clone())
        .chain(errors.iter().map(|e| e.message.clone()))
    {
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains("access_key="), "{text}");
        assert!(!text.contains("ticket="), "{text}");
        assert!(!text.contains('\n'));
        assert!(text.chars().count() <= 500);
    }
    r.stop().await.unwrap();
    em.close().await;
}

fn data_frame(
    message_id: &str,
    sum: &str,
    seq: &str,
    payload: &[u8],
) -> feishu_transport::core::frame::Frame {
    use feishu_transport::core::frame::{Frame, Header, METHOD_DATA};
    let h = |k: &str, v: &str| Header {
        key: k.into(),
        value: v.into(),
    };
    Frame {
        seq_id: 1,
        log_id: 1,
        service: 1,
        method: METHOD_DATA,
        headers: vec![
            h("type", "event"),
            h("message_id", message_id),
            h("sum", sum),
            h("seq", seq),
            h("trace_id", "t"),
        ],
        payload: Some(payload.to_vec()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_dropped_counted_and_the_connection_keeps_working() {
    use feishu_transport::core::frame::{Frame, Header, METHOD_CONTROL};
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let handler = TestHandler::ok();
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let mut expected_drops = 0u64;
    // garbage bytes, a text frame, a protobuf whose payload claims 2 GiB
    em.send_raw(None, vec![0xff, 0x00, 0x13, 0x37]);
    em.send_text(None, "hello");
    em.send_raw(None, vec![0x42, 0x80, 0x80, 0x80, 0x80, 0x08, 1, 2, 3]);
    expected_drops += 3;
    // sum = 1 000 000, seq >= sum, a sum that changes between fragments
    em.send_frame(None, data_frame("m-huge", "1000000", "0", b"x"));
    em.send_frame(None, data_frame("m-seq", "2", "2", b"x"));
    em.send_frame(None, data_frame("m-sum", "3", "0", b"{"));
    em.send_frame(None, data_frame("m-sum", "4", "1", b"}"));
    expected_drops += 3;
    // a payload that is not UTF-8, and one that is not JSON
    em.send_frame(None, data_frame("m-utf8", "1", "0", &[0xc3, 0x28]));
    em.send_frame(None, data_frame("m-json", "1", "0", b"not json"));
    expected_drops += 2;
    // a pong with garbage config
    em.send_frame(
        None,
        Frame {
            method: METHOD_CONTROL,
            headers: vec![Header {
                key: "type".into(),
                value: "pong".into(),
            }],
            payload: Some(b"\x00garbage".to_vec()),
            ..Default::default()
        },
    );
    expected_drops += 1;
    let t = r.transport.clone();
    wait_until("drops counted", Duration::from_secs(5), || {
        t.status().counters.dropped_frames >= expected_drops
    })
    .await;
    assert_eq!(r.transport.status().counters.dropped_frames, expected_drops);
    assert_eq!(handler.calls(), 0);
    // each was logged once
    let warns = r
        .observer
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| *l == LogLevel::Warn)
        .count();
    assert_eq!(warns as u64, expected_drops);
    // and the connection still works
    let id = em.push_event(event("still-fine"), PushOptions::default());
    assert_eq!(
        em.wait_for_ack(&id, None, Duration::from_secs(5))
            .await
            .unwrap()
            .code,
        200
    );
    assert_eq!(r.transport.status().counters.connects, 1);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_fragmented_message_expires_and_is_counted() {
    // The expiry check is armed only while fragments are held (connection.rs,
    // EXPIRY_TICK): a first fragment must arm it, and the partial must still go.
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let mut cfg = config(&em);
    cfg.fragment_limits.expiry = Duration::from_millis(200);
    let r = start(cfg, TestHandler::ok());
    r.connected().await;
    em.send_frame(None, data_frame("never-finished", "2", "0", b"{"));
    let t = r.transport.clone();
    wait_until("the partial expired", Duration::from_secs(5), || {
        t.status().counters.dropped_frames >= 1
    })
    .await;
    assert_eq!(r.transport.status().counters.dropped_frames, 1);
    let expired = r
        .observer
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, text)| {
            *l == LogLevel::Warn && text.contains("discarded 1 incomplete fragmented message")
        })
        .count();
    assert_eq!(expired, 1);
    // A later fragmented message is assembled and handled as before.
    push_fragmented_and_expect_200(&em, "after-expiry", 2, Duration::from_secs(5)).await;
    r.stop().await.unwrap();
    em.close().await;
}

/// Pushes event `name` in `fragments` fragments and asserts its ack, within `within`, is 200.
async fn push_fragmented_and_expect_200(
    em: &Emulator,
    name: &str,
    fragments: usize,
    within: Duration,
) {
    let id = em.push_event(
        event(name),
        PushOptions {
            fragments,
            ..PushOptions::default()
        },
    );
    assert_eq!(em.wait_for_ack(&id, None, within).await.unwrap().code, 200);
}

/// A connected transport (fragment buffer capped at 1 MiB) sent `n` first fragments of
/// 1 KiB each, of messages that never finish.
async fn flooded_with_partials(prefix: &str, n: usize) -> (Emulator, Running) {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let mut cfg = config(&em);
    cfg.fragment_limits.max_buffered_bytes = 1 << 20;
    let r = start(cfg, TestHandler::ok());
    r.connected().await;
    let chunk = vec![b'a'; 1024];
    for i in 0..n {
        em.send_frame(None, data_frame(&format!("{prefix}-{i}"), "2", "0", &chunk));
    }
    (em, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unfinished_messages_stay_bounded() {
    let (em, r) = flooded_with_partials("partial", 10_000).await;
    let id = em.push_event(event("after-flood"), PushOptions::default());
    assert_eq!(
        em.wait_for_ack(&id, None, Duration::from_secs(10))
            .await
            .unwrap()
            .code,
        200
    );
    let s = r.transport.status();
    // 1024 partials fit under the 1 MiB cap at most; each newer one evicted the oldest,
    // and every eviction was counted
    assert!(
        s.counters.dropped_frames >= 10_000 - 1024,
        "{:?}",
        s.counters
    );
    assert_eq!(s.counters.connects, 1);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_event_is_handled_at_once_while_junk_partials_fill_every_slot() {
    // Every slot and every buffered byte taken by messages that will never finish.
    let (em, r) = flooded_with_partials("junk", 2_000).await;
    // Refusing the newcomer (the old rule) left it unacked until the junk expired (10 s).
    push_fragmented_and_expect_200(&em, "real-fragmented", 3, Duration::from_secs(3)).await;
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_that_answers_too_slowly_times_out_and_is_retried() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    em.fail_discovery(DiscoveryFault {
        count: 1,
        kind: DiscoveryFaultKind::Delay(Duration::from_millis(800)),
    });
    let mut cfg = config(&em);
    cfg.timeouts.discovery = Duration::from_millis(200);
    let r = start(cfg, TestHandler::ok());
    r.connected().await;
    assert_eq!(r.observer.error_codes(), vec![ErrorCode::DiscoveryTimeout]);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cut_by_a_server_close_mid_fragment_is_discarded() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let handler = TestHandler::ok();
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let first = r.transport.status().connection_id;
    // half of a two-fragment message, then the server goes away without a close frame
    em.send_frame(None, data_frame("cut", "2", "0", br#"{"schema":"2.0","#));
    em.drop_connections(None, false);
    r.connected_anew(&first).await;
    // the other half on the new socket must not complete a message from the old one
    em.send_frame(
        None,
        data_frame("cut", "2", "1", br#""header":{"event_id":"cut"}}"#),
    );
    let id = em.push_event(event("after-cut"), PushOptions::default());
    em.wait_for_ack(&id, None, Duration::from_secs(5))
        .await
        .unwrap();
    let seen: Vec<_> = handler
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.message_id.clone())
        .collect();
    assert_eq!(seen, vec![id]);
    r.stop().await.unwrap();
    em.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_close_mid_handler_drops_the_ack_and_the_redelivery_is_answered_from_dedupe() {
    let em = emulator_redelivering_after(300).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let handler = TestHandler::new(move |_, _| {
        let g = g.clone();
        Box::pin(async move {
            g.notified().await;
            Ok(Some("\"done\"".into()))
        })
    });
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let id = em.push_event(event("mid-handler"), PushOptions::default());
    let h = handler.clone();
    wait_until("handler entered", Duration::from_secs(5), || h.calls() == 1).await;
    em.drop_connections(None, true);
    let t = r.transport.clone();
    wait_until("reconnected", Duration::from_secs(5), || {
        t.status().counters.reconnects == 1 && t.status().connected
    })
    .await;
    // the handler finishes after its socket died; the re-delivery waits for it, then
    // carries its result; the handler never runs twice
    gate.notify_one();
    let ack = em
        .wait_for_ack(&id, Some(200), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(ack.delivery >= 2);
    assert_eq!(ack.data.as_deref(), Some(&b"\"done\""[..]));
    assert_eq!(handler.calls(), 1);
    assert!(r.transport.status().counters.duplicates >= 1);
    r.stop().await.unwrap();
    em.close().await;
}

/// A handler that loses its first event's reply (drops it unanswered) and answers the
/// rest from spawned tasks.
struct LosesFirstReply {
    calls: AtomicUsize,
}

impl EventHandler for LosesFirstReply {
    fn handle(&self, _event: InboundEvent<'_>, reply: Reply) {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            drop(reply);
        } else {
            tokio::spawn(async move { reply.send(Ok(Some(r#"{"ok":true}"#.into()))) });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_dropped_unanswered_acks_500_and_the_redelivery_is_handled() {
    let em = emulator_redelivering_after(200).await;
    let handler = Arc::new(LosesFirstReply {
        calls: AtomicUsize::new(0),
    });
    let r = start(config(&em), handler.clone());
    r.connected().await;
    let id = em.push_event(event("e-lost"), PushOptions::default());
    let first = em
        .wait_for_ack(&id, Some(500), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.delivery, 1);
    let second = em
        .wait_for_ack(&id, Some(200), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(second.delivery, 2);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
    assert!(r.observer.logged(
        LogLevel::Error,
        feishu_transport::core::events::REPLY_DROPPED
    ));
    r.stop().await.unwrap();
    em.close().await;
}

/// `connections: 2`: two sockets, each event acked on the socket it came in on, and a
/// dropped one leaves the other hearing while it reconnects.
#[tokio::test]
async fn two_connections_share_the_app_and_survive_one_drop() {
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let mut cfg = config(&em);
    cfg.connections = 2;
    cfg.reconnect = Some(BackoffPolicy {
        initial: Duration::from_millis(500),
        max: Duration::from_millis(500),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts: None,
    });
    let handler = TestHandler::ok();
    let r = start(cfg, handler.clone());
    let t = r.transport.clone();
    wait_until("two connections", Duration::from_secs(5), || {
        t.status().connections.iter().all(|c| c.connected)
    })
    .await;
    let conns = em.connections();
    assert_eq!(conns.len(), 2);
    for c in &conns {
        let id = em.push_event(
            event(&format!("on-{}", c.id)),
            PushOptions {
                connection_id: Some(c.id.clone()),
                ..Default::default()
            },
        );
        let ack = em
            .wait_for_ack(&id, Some(200), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ack.connection_id, c.id, "acked where it was delivered");
    }
    assert_eq!(r.observer.notes.lock().unwrap().len(), 1, "one onReady");

    let kept = t.status().connections[0].connection_id.clone().unwrap();
    assert!(t.drop_connection("test", Some(1)));
    wait_until("connection 1 reconnecting", Duration::from_secs(5), || {
        t.status().connections[1].state == State::Reconnecting
    })
    .await;
    assert!(t.status().connected, "the whole is up while one socket is");
    let id = em.push_event(event("while-one-is-down"), PushOptions::default());
    let ack = em
        .wait_for_ack(&id, Some(200), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ack.connection_id, kept);
    wait_until("connection 1 back", Duration::from_secs(5), || {
        t.status().connections[1].connected
    })
    .await;
    let notes = r.observer.notes.lock().unwrap().clone();
    assert_eq!(&notes[1..], [("reconnecting", 1), ("reconnected", 1)]);
    assert_eq!(handler.calls(), 3);
    r.transport.close(false, None).await;
    assert_eq!(r.run.await.unwrap().unwrap(), StopReason::Closed);
    assert!(t
        .status()
        .connections
        .iter()
        .all(|c| c.state == State::Stopped));
}
