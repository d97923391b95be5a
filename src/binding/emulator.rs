//! `FeishuEmulator`: the JavaScript face of [`crate::emulator`]. Only conversion lives
//! here: camelCase option objects in, plain objects out, durations in milliseconds, and
//! 64-bit counters as JS numbers.

use std::collections::HashMap;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::core::frame::{Frame, Header};
use crate::emulator as emu;

/// One app the emulator's discovery endpoint accepts.
#[napi(object)]
pub struct EmulatorApp {
    pub app_id: String,
    pub app_secret: String,
}

/// The `ClientConfig` Feishu sends in discovery answers and pongs. All values are
/// **seconds** (or a count), exactly as on the wire. Missing fields keep their current
/// value (the defaults are 120, -1, 120, 30).
#[napi(object)]
pub struct EmulatorClientConfig {
    pub ping_interval: Option<i64>,
    /// Negative means unlimited.
    pub reconnect_count: Option<i64>,
    pub reconnect_interval: Option<i64>,
    pub reconnect_nonce: Option<i64>,
}

/// Options of `FeishuEmulator.start()`; every field is optional.
#[napi(object)]
pub struct EmulatorOptions {
    /// Interface to listen on; default `"127.0.0.1"`.
    pub host: Option<String>,
    /// Port; default 0 (a free port, read it back from `port`).
    pub port: Option<u32>,
    /// The accepted apps. Default: one app, `cli_a1b2c3d4e5f60718` / `emulator-secret`
    /// (the app id of the sample payloads).
    pub apps: Option<Vec<EmulatorApp>>,
    /// Shorthand for a single app (used when `apps` is absent).
    pub app_id: Option<String>,
    /// Secret of the `appId` shorthand; default `emulator-secret`.
    pub app_secret: Option<String>,
    /// What discovery and pongs carry.
    pub client_config: Option<EmulatorClientConfig>,
    /// How long a delivery may stay unacked before it is pushed again; default 3000.
    pub ack_deadline_ms: Option<f64>,
    /// Re-deliveries after the first delivery before an event is given up; default 3.
    pub max_redeliveries: Option<u32>,
    /// The `service_id` of issued URLs (clients echo it in pings); default 33554678.
    pub service_id: Option<i32>,
    /// Live connections allowed per app; default 50.
    pub max_connections_per_app: Option<u32>,
    /// Ack records and finished events remembered (default 250000; older ones are
    /// forgotten in batches, so up to twice as many are held).
    pub max_history: Option<u32>,
    /// Serve `https`/`wss` with this certificate (`domain` becomes `https://…`).
    pub tls: Option<EmulatorTlsOptions>,
}

/// The certificate the emulator serves, as PEM.
#[napi(object)]
pub struct EmulatorTlsOptions {
    /// The certificate chain, leaf first.
    pub cert_pem: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
}

/// A throwaway CA and a server certificate it signed, from
/// `FeishuEmulator.generateTestCertificates()`.
#[napi(object)]
pub struct EmulatorTestCertificates {
    /// The CA certificate: give it to the client (`tls.caPem`).
    pub ca_pem: String,
    /// The server certificate, for `start({ tls: { certPem, keyPem } })`.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// Options of `pushEvent()` / `pushSample()`.
#[napi(object)]
pub struct EmulatorPushOptions {
    /// The app whose connections receive it; default the first app (or the app of
    /// `connectionId`).
    pub app_id: Option<String>,
    /// Split the payload into this many fragments (clamped to 1..=payload bytes).
    pub fragments: Option<u32>,
    /// The `type` header: `'event'` (default) or `'card'`. Cards are sent once and not
    /// tracked (no SDK acks them).
    #[napi(js_name = "type", ts_type = "'event' | 'card' | (string & {})")]
    pub frame_type: Option<String>,
    /// Fragment order on the wire; default `'in-order'`.
    #[napi(ts_type = "'in-order' | 'reverse' | 'shuffle'")]
    pub order: Option<String>,
    /// Deliver to this connection (its `id`, the URL's device_id) instead of a random one.
    pub connection_id: Option<String>,
    /// Use this `message_id` instead of a generated one.
    pub message_id: Option<String>,
    /// Use this `trace_id` for the first delivery.
    pub trace_id: Option<String>,
}

/// Options of `pushMany()` (benchmarks): the pushing happens inside Rust.
#[napi(object)]
pub struct EmulatorPushManyOptions {
    /// How many events.
    pub count: u32,
    /// Size of each generated payload (a v2 `im.message.receive_v1` envelope with a
    /// unique `event_id`); default 512.
    pub payload_bytes: Option<u32>,
    /// Push this payload for every event instead (an object is JSON-serialised).
    #[napi(ts_type = "object | string")]
    pub payload: Option<serde_json::Value>,
    /// Fragments per event; default 1.
    pub fragments: Option<u32>,
    /// At most this many events pushed and not yet acked with 200.
    pub max_in_flight: Option<u32>,
    /// Pace the pushes at this many per second.
    pub rate_per_sec: Option<f64>,
    /// The app; default the first.
    pub app_id: Option<String>,
}

/// Options of the `waitFor…()` methods.
#[napi(object)]
pub struct EmulatorWaitOptions {
    /// Give up after this many milliseconds; default 5000.
    pub timeout_ms: Option<f64>,
    /// `waitForAck`: only an ack with this code counts.
    pub code: Option<i64>,
    /// `waitForConnections`: count only this app's connections.
    pub app_id: Option<String>,
}

/// One ack received from a client. Absent values are `null`.
#[napi(object, use_nullable = true)]
pub struct EmulatorAckRecord {
    pub message_id: String,
    /// `header.event_id` (v2) or `uuid` (v1) of the pushed payload.
    pub event_id: Option<String>,
    /// 200 ok, 500 failed.
    pub code: i64,
    /// The ack's `data`, base64-decoded: the JSON text of a handler's reply.
    pub data: Option<String>,
    /// The headers of the ack frame (the echoed ones plus `biz_rt`).
    pub headers: HashMap<String, String>,
    /// The connection it came in on.
    pub connection_id: String,
    /// The `biz_rt` header, if numeric.
    pub biz_rt: Option<i64>,
    /// When it arrived, ms since the epoch.
    pub at: f64,
    /// From the push of that delivery's last fragment to the ack, in microseconds.
    pub latency_us: f64,
    /// 1 = answer to the first delivery, 2 = to the first re-delivery, …; 0 = a message
    /// the emulator never pushed.
    pub delivery: u32,
}

/// A live connection.
#[napi(object)]
pub struct EmulatorConnection {
    /// The device_id of its URL.
    pub id: String,
    pub app_id: String,
    pub service_id: i32,
    /// ms since the epoch.
    pub connected_at: f64,
    /// Protocol pings received on it.
    pub pings: f64,
    /// True after `stall()`.
    pub stalled: bool,
}

/// One protocol ping received.
#[napi(object)]
pub struct EmulatorPing {
    pub connection_id: String,
    /// The ping frame's `service` field.
    pub service: i32,
    /// ms since the epoch.
    pub at: f64,
}

/// Counters since start.
#[napi(object)]
pub struct EmulatorStats {
    pub discovery_calls: f64,
    pub discovery_faults: f64,
    pub handshakes: f64,
    pub handshakes_rejected: f64,
    pub connections_total: f64,
    pub live_connections: f64,
    /// Events pushed (cards excluded).
    pub pushed: f64,
    /// Delivery attempts, re-deliveries included.
    pub deliveries: f64,
    pub redeliveries: f64,
    pub frames_sent: f64,
    pub acks: f64,
    pub acks_ok: f64,
    pub acks_failed: f64,
    pub acks_unknown: f64,
    /// Pushed events not yet acked with 200.
    pub pending: f64,
    pub given_up: f64,
    /// Deliveries waiting for a live connection.
    pub queued: f64,
    pub pings: f64,
    pub bad_frames_received: f64,
    /// TLS handshakes that failed (a client not trusting the certificate, say).
    pub tls_handshake_failures: f64,
}

/// What the next discovery requests get instead of a normal answer.
#[napi(object)]
pub struct EmulatorDiscoveryFault {
    /// How many requests; default 1.
    pub count: Option<u32>,
    /// `'code'`: HTTP 200 with `{code, msg}`; `'http-status'`: that HTTP status;
    /// `'hang'`: never answer; `'delay'`: answer correctly after `delayMs`; `'body'`:
    /// HTTP 200 with the raw `body`; `'url'`: code 0 with this `url`.
    #[napi(ts_type = "'code' | 'http-status' | 'hang' | 'delay' | 'body' | 'url'")]
    pub kind: String,
    pub code: Option<i64>,
    pub msg: Option<String>,
    pub status: Option<u32>,
    pub delay_ms: Option<f64>,
    pub body: Option<String>,
    pub url: Option<String>,
}

/// How to refuse handshakes.
#[napi(object)]
pub struct EmulatorHandshakeRejection {
    /// How many handshakes; default 1.
    pub count: Option<u32>,
    /// The HTTP status line; default 514.
    pub http_status: Option<u32>,
    /// The `Handshake-Status` header (omitted when absent).
    pub handshake_status: Option<i64>,
    /// The `Handshake-Msg` header.
    pub msg: Option<String>,
    /// The `Handshake-Autherrcode` header (1000040350 = connection limit).
    pub autherrcode: Option<i64>,
}

/// A pbbp2 header.
#[napi(object)]
pub struct EmulatorFrameHeader {
    pub key: String,
    pub value: String,
}

/// A raw pbbp2 frame for `sendFrame()`; missing numbers are 0.
#[napi(object)]
pub struct EmulatorFrame {
    pub seq_id: Option<i64>,
    pub log_id: Option<i64>,
    pub service: Option<i32>,
    /// 0 control, 1 data.
    pub method: Option<i32>,
    pub headers: Option<Vec<EmulatorFrameHeader>>,
    pub payload_encoding: Option<String>,
    pub payload_type: Option<String>,
    /// Bytes, or a string sent as UTF-8.
    pub payload: Option<Either<Buffer, String>>,
    pub log_id_new: Option<String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(Status::InvalidArg, msg.into())
}

/// Milliseconds from JS as a Duration: negative or NaN is 0, and anything above a year
/// (Infinity included) is a year, so no deadline arithmetic can overflow.
fn ms(v: f64) -> Duration {
    const YEAR_MS: f64 = 365.0 * 24.0 * 3600.0 * 1000.0;
    if v.is_nan() || v <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(v.min(YEAR_MS) / 1000.0)
    }
}

const DEFAULT_WAIT_MS: f64 = 5000.0;

fn merge_config(base: emu::ClientConfig, c: &EmulatorClientConfig) -> emu::ClientConfig {
    emu::ClientConfig {
        ping_interval: c.ping_interval.unwrap_or(base.ping_interval),
        reconnect_count: c.reconnect_count.unwrap_or(base.reconnect_count),
        reconnect_interval: c.reconnect_interval.unwrap_or(base.reconnect_interval),
        reconnect_nonce: c.reconnect_nonce.unwrap_or(base.reconnect_nonce),
    }
}

fn config_to_js(c: emu::ClientConfig) -> EmulatorClientConfig {
    EmulatorClientConfig {
        ping_interval: Some(c.ping_interval),
        reconnect_count: Some(c.reconnect_count),
        reconnect_interval: Some(c.reconnect_interval),
        reconnect_nonce: Some(c.reconnect_nonce),
    }
}

fn to_rust_options(o: Option<EmulatorOptions>) -> Result<emu::EmulatorOptions> {
    let mut opts = emu::EmulatorOptions::default();
    let Some(o) = o else {
        return Ok(opts);
    };
    if let Some(h) = o.host {
        opts.host = h;
    }
    if let Some(p) = o.port {
        opts.port = u16::try_from(p).map_err(|_| invalid(format!("port {p} is out of range")))?;
    }
    if let Some(apps) = o.apps {
        opts.apps = apps
            .into_iter()
            .map(|a| emu::AppCredentials {
                app_id: a.app_id,
                app_secret: a.app_secret,
            })
            .collect();
    } else if let Some(app_id) = o.app_id {
        opts.apps = vec![emu::AppCredentials {
            app_id,
            app_secret: o
                .app_secret
                .unwrap_or_else(|| emu::DEFAULT_APP_SECRET.to_string()),
        }];
    } else if let (Some(secret), Some(first)) = (o.app_secret, opts.apps.first_mut()) {
        first.app_secret = secret;
    }
    if let Some(c) = &o.client_config {
        opts.client_config = merge_config(opts.client_config, c);
    }
    if let Some(d) = o.ack_deadline_ms {
        opts.ack_deadline = ms(d);
    }
    if let Some(n) = o.max_redeliveries {
        opts.max_redeliveries = n;
    }
    if let Some(s) = o.service_id {
        opts.service_id = s;
    }
    if let Some(n) = o.max_connections_per_app {
        opts.max_connections_per_app = n as usize;
    }
    if let Some(n) = o.max_history {
        opts.max_history = n as usize;
    }
    opts.tls = o.tls.map(|t| emu::EmulatorTls {
        cert_pem: t.cert_pem,
        key_pem: t.key_pem,
    });
    Ok(opts)
}

fn to_push_options(o: Option<EmulatorPushOptions>) -> Result<emu::PushOptions> {
    let mut opts = emu::PushOptions::default();
    let Some(o) = o else {
        return Ok(opts);
    };
    opts.app_id = o.app_id;
    if let Some(n) = o.fragments {
        opts.fragments = n as usize;
    }
    if let Some(t) = o.frame_type {
        opts.frame_type = t;
    }
    if let Some(order) = o.order {
        opts.order = order.parse().map_err(invalid)?;
    }
    opts.connection_id = o.connection_id;
    opts.message_id = o.message_id;
    opts.trace_id = o.trace_id;
    Ok(opts)
}

/// A payload given as a string, a Buffer, or any other value (JSON-serialised).
fn payload_bytes(env: &Env, payload: Either3<String, Buffer, Unknown<'_>>) -> Result<Vec<u8>> {
    match payload {
        Either3::A(s) => Ok(s.into_bytes()),
        Either3::B(b) => Ok(b.to_vec()),
        Either3::C(v) => {
            let value: serde_json::Value = env.from_js_value(v)?;
            serde_json::to_vec(&value).map_err(|e| invalid(format!("payload: {e}")))
        }
    }
}

fn ack_to_js(a: emu::AckRecord) -> EmulatorAckRecord {
    EmulatorAckRecord {
        message_id: a.message_id,
        event_id: a.event_id,
        code: a.code,
        data: a.data.map(|d| String::from_utf8_lossy(&d).into_owned()),
        headers: a.headers.into_iter().collect(),
        connection_id: a.connection_id,
        biz_rt: a.biz_rt,
        at: a.at_ms as f64,
        latency_us: a.latency_us as f64,
        delivery: a.delivery,
    }
}

fn wait_error(e: emu::EmulatorError) -> Error {
    Error::new(Status::GenericFailure, e.to_string())
}

/// A local Feishu long-connection server for tests, demos and benchmarks: the discovery
/// endpoint, the WebSocket with pbbp2 frames, pongs, fragments, cluster delivery,
/// re-delivery of unacked events, and faults on demand. Point a client at `domain`.
///
/// Its server runs on the addon's own threads and does not keep the Node process alive;
/// call `close()` when done to release the port.
#[napi]
pub struct FeishuEmulator {
    inner: emu::Emulator,
}

#[napi]
impl FeishuEmulator {
    /// Starts an emulator (by default on 127.0.0.1 and a free port).
    #[napi]
    pub async fn start(options: Option<EmulatorOptions>) -> Result<FeishuEmulator> {
        let opts = to_rust_options(options)?;
        let inner = emu::Emulator::start(opts).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                invalid(e.to_string())
            } else {
                Error::new(Status::GenericFailure, format!("cannot listen: {e}"))
            }
        })?;
        Ok(FeishuEmulator { inner })
    }

    /// Makes a fresh CA and a server certificate it signed, for `hosts` (default
    /// `localhost`, `127.0.0.1`, `::1`): serve with `start({ tls: { certPem, keyPem } })`
    /// and trust `caPem` in the client. For tests only.
    #[napi]
    pub fn generate_test_certificates(
        hosts: Option<Vec<String>>,
    ) -> Result<EmulatorTestCertificates> {
        let c = emu::generate_test_certificates(&hosts.unwrap_or_default()).map_err(invalid)?;
        Ok(EmulatorTestCertificates {
            ca_pem: c.ca_pem,
            cert_pem: c.cert_pem,
            key_pem: c.key_pem,
        })
    }

    /// The names of the bundled sample payloads (`fixtures/events/*.json`).
    #[napi]
    pub fn sample_names() -> Vec<String> {
        emu::sample_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The bundled sample payloads, by name.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn samples() -> Result<HashMap<String, serde_json::Value>> {
        emu::samples()
            .into_iter()
            .map(|(name, json)| {
                let v = serde_json::from_str(json)
                    .map_err(|e| invalid(format!("sample {name}: {e}")))?;
                Ok((name.to_string(), v))
            })
            .collect()
    }

    /// The base URL to use as the client's domain: `http://127.0.0.1:<port>` (`https://…` when serving TLS).
    #[napi(getter)]
    pub fn domain(&self) -> String {
        self.inner.domain()
    }

    /// The port the emulator listens on.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.inner.port() as u32
    }

    /// The app id of the first (default) app.
    #[napi(getter)]
    pub fn app_id(&self) -> String {
        self.inner
            .apps()
            .into_iter()
            .next()
            .map(|a| a.app_id)
            .unwrap_or_default()
    }

    /// The secret of the first (default) app.
    #[napi(getter)]
    pub fn app_secret(&self) -> String {
        self.inner
            .apps()
            .into_iter()
            .next()
            .map(|a| a.app_secret)
            .unwrap_or_default()
    }

    /// Pushes one event and returns its `message_id`. An object payload is
    /// JSON-serialised; a string or Buffer is sent as is. Never fails for lack of a
    /// connection: the event waits for one.
    #[napi(catch_unwind)]
    pub fn push_event(
        &self,
        env: &Env,
        #[napi(ts_arg_type = "object | string | Buffer")] payload: Either3<
            String,
            Buffer,
            Unknown<'_>,
        >,
        options: Option<EmulatorPushOptions>,
    ) -> Result<String> {
        let bytes = payload_bytes(env, payload)?;
        Ok(self.inner.push_event(bytes, to_push_options(options)?))
    }

    /// Pushes a bundled sample by name (see `sampleNames()`); returns its `message_id`.
    #[napi(catch_unwind)]
    pub fn push_sample(
        &self,
        name: String,
        options: Option<EmulatorPushOptions>,
    ) -> Result<String> {
        let json = emu::sample(&name).ok_or_else(|| {
            invalid(format!(
                "unknown sample {name:?}; known: {}",
                emu::sample_names().join(", ")
            ))
        })?;
        Ok(self
            .inner
            .push_event(json.as_bytes().to_vec(), to_push_options(options)?))
    }

    /// Pushes `count` events from inside Rust (for benchmarks) and resolves with the
    /// number pushed once all are pushed (not acked: use `waitForAllAcked`).
    #[napi]
    pub async fn push_many(&self, options: EmulatorPushManyOptions) -> Result<u32> {
        let payload = match options.payload {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.into_bytes()),
            Some(v) => Some(serde_json::to_vec(&v).map_err(|e| invalid(format!("payload: {e}")))?),
        };
        let ids = self
            .inner
            .push_many(emu::PushManyOptions {
                count: options.count as usize,
                payload,
                payload_bytes: options.payload_bytes.map_or(512, |n| n as usize),
                fragments: options.fragments.map_or(1, |n| n as usize),
                max_in_flight: options.max_in_flight.map(|n| n as usize),
                rate_per_sec: options.rate_per_sec,
                app_id: options.app_id,
            })
            .await;
        Ok(ids.len() as u32)
    }

    /// Resolves with the first ack of `messageId` (with `code`, if given); rejects after
    /// `timeoutMs` (default 5000) with an error naming the message id.
    #[napi]
    pub async fn wait_for_ack(
        &self,
        message_id: String,
        options: Option<EmulatorWaitOptions>,
    ) -> Result<EmulatorAckRecord> {
        let (timeout, code) = options.map_or((DEFAULT_WAIT_MS, None), |o| {
            (o.timeout_ms.unwrap_or(DEFAULT_WAIT_MS), o.code)
        });
        self.inner
            .wait_for_ack(&message_id, code, ms(timeout))
            .await
            .map(ack_to_js)
            .map_err(wait_error)
    }

    /// Resolves once at least `n` connections (of `appId`, or of every app) are live.
    #[napi]
    pub async fn wait_for_connections(
        &self,
        n: u32,
        options: Option<EmulatorWaitOptions>,
    ) -> Result<()> {
        let (timeout, app_id) = options.map_or((DEFAULT_WAIT_MS, None), |o| {
            (o.timeout_ms.unwrap_or(DEFAULT_WAIT_MS), o.app_id)
        });
        self.inner
            .wait_for_connections(app_id.as_deref(), n as usize, ms(timeout))
            .await
            .map_err(wait_error)
    }

    /// Resolves once every pushed event has been acked with 200.
    #[napi]
    pub async fn wait_for_all_acked(&self, options: Option<EmulatorWaitOptions>) -> Result<()> {
        let timeout = options
            .and_then(|o| o.timeout_ms)
            .unwrap_or(DEFAULT_WAIT_MS);
        self.inner
            .wait_for_all_acked(ms(timeout))
            .await
            .map_err(wait_error)
    }

    /// Every ack received, in arrival order.
    #[napi]
    pub fn acks(&self) -> Vec<EmulatorAckRecord> {
        self.inner.acks().into_iter().map(ack_to_js).collect()
    }

    /// The live connections.
    #[napi]
    pub fn connections(&self) -> Vec<EmulatorConnection> {
        self.inner
            .connections()
            .into_iter()
            .map(|c| EmulatorConnection {
                id: c.id,
                app_id: c.app_id,
                service_id: c.service_id,
                connected_at: c.connected_at_ms as f64,
                pings: c.pings as f64,
                stalled: c.stalled,
            })
            .collect()
    }

    /// Every protocol ping received.
    #[napi]
    pub fn pings(&self) -> Vec<EmulatorPing> {
        self.inner
            .pings()
            .into_iter()
            .map(|p| EmulatorPing {
                connection_id: p.connection_id,
                service: p.service,
                at: p.at_ms as f64,
            })
            .collect()
    }

    /// Counters since start.
    #[napi]
    pub fn stats(&self) -> EmulatorStats {
        let s = self.inner.stats();
        EmulatorStats {
            discovery_calls: s.discovery_calls as f64,
            discovery_faults: s.discovery_faults as f64,
            handshakes: s.handshakes as f64,
            handshakes_rejected: s.handshakes_rejected as f64,
            connections_total: s.connections_total as f64,
            live_connections: s.live_connections as f64,
            pushed: s.pushed as f64,
            deliveries: s.deliveries as f64,
            redeliveries: s.redeliveries as f64,
            frames_sent: s.frames_sent as f64,
            acks: s.acks as f64,
            acks_ok: s.acks_ok as f64,
            acks_failed: s.acks_failed as f64,
            acks_unknown: s.acks_unknown as f64,
            pending: s.pending as f64,
            given_up: s.given_up as f64,
            queued: s.queued as f64,
            pings: s.pings as f64,
            bad_frames_received: s.bad_frames_received as f64,
            tls_handshake_failures: s.tls_handshake_failures as f64,
        }
    }

    /// The ClientConfig later pongs and discovery answers carry.
    #[napi]
    pub fn client_config(&self) -> EmulatorClientConfig {
        config_to_js(self.inner.client_config())
    }

    /// Makes pongs carry this config while discovery keeps the client config (`null`:
    /// pongs follow the client config again). Missing fields take the client config's.
    #[napi]
    pub fn set_pong_config(&self, config: Option<EmulatorClientConfig>) {
        let pong = config.map(|c| merge_config(self.inner.client_config(), &c));
        self.inner.set_pong_config(pong);
    }

    /// Changes the ClientConfig of later pongs and discovery answers (seconds, as on the
    /// wire); missing fields keep their value.
    #[napi]
    pub fn set_client_config(&self, config: EmulatorClientConfig) {
        let merged = merge_config(self.inner.client_config(), &config);
        self.inner.set_client_config(merged);
    }

    /// Closes live connections (all when `connectionId` is null/absent): with a WebSocket
    /// close frame when `closeFrame` is true (the default), else by dropping the TCP
    /// socket. Returns how many.
    #[napi]
    pub fn drop_connections(
        &self,
        connection_id: Option<String>,
        close_frame: Option<bool>,
    ) -> u32 {
        self.inner
            .drop_connections(connection_id.as_deref(), close_frame.unwrap_or(true)) as u32
    }

    /// Stops reading and writing on live connections (all when absent) but keeps their
    /// sockets open: a half-open peer. New connections are not affected. Returns how many.
    #[napi]
    pub fn stall(&self, connection_id: Option<String>) -> u32 {
        self.inner.stall(connection_id.as_deref()) as u32
    }

    /// Makes the next discovery requests fail (faults queue up in call order).
    #[napi]
    pub fn fail_discovery(&self, fault: EmulatorDiscoveryFault) -> Result<()> {
        let kind = match fault.kind.as_str() {
            "code" => emu::DiscoveryFaultKind::Code {
                code: fault.code.unwrap_or(1),
                msg: fault.msg.unwrap_or_else(|| "system busy".into()),
            },
            "http-status" => {
                let status = fault.status.unwrap_or(500);
                emu::DiscoveryFaultKind::HttpStatus(
                    u16::try_from(status)
                        .ok()
                        .filter(|s| (100..1000).contains(s))
                        .ok_or_else(|| invalid(format!("bad HTTP status {status}")))?,
                )
            }
            "hang" => emu::DiscoveryFaultKind::Hang,
            "delay" => emu::DiscoveryFaultKind::Delay(ms(fault.delay_ms.unwrap_or(0.0))),
            "body" => emu::DiscoveryFaultKind::Body(fault.body.unwrap_or_default()),
            "url" => emu::DiscoveryFaultKind::Url(fault.url.unwrap_or_default()),
            other => {
                return Err(invalid(format!(
                    "unknown discovery fault kind {other:?} (code, http-status, hang, delay, body, url)"
                )))
            }
        };
        self.inner.fail_discovery(emu::DiscoveryFault {
            count: fault.count.map_or(1, |n| n as usize),
            kind,
        });
        Ok(())
    }

    /// Refuses the next handshakes with an HTTP status and `Handshake-*` headers.
    #[napi]
    pub fn reject_handshakes(&self, rejection: EmulatorHandshakeRejection) -> Result<()> {
        let status = rejection.http_status.unwrap_or(514);
        let http_status = u16::try_from(status)
            .ok()
            .filter(|s| (100..1000).contains(s) && *s != 101)
            .ok_or_else(|| invalid(format!("bad HTTP status {status}")))?;
        self.inner.reject_handshakes(
            rejection.count.map_or(1, |n| n as usize),
            http_status,
            rejection.handshake_status,
            rejection.msg,
            rejection.autherrcode,
        );
        Ok(())
    }

    /// Reads the next `count` (default 1) upgrade requests and never answers them.
    #[napi]
    pub fn hang_handshakes(&self, count: Option<u32>) {
        self.inner.hang_handshakes(count.map_or(1, |n| n as usize));
    }

    /// Completes the next `count` handshakes (absent: all until `clearFaults()`) and
    /// closes each connection at once.
    #[napi]
    pub fn accept_and_close(&self, count: Option<u32>) {
        self.inner.accept_and_close(count.map(|n| n as usize));
    }

    /// Forgets every pending discovery and handshake fault.
    #[napi]
    pub fn clear_faults(&self) {
        self.inner.clear_faults();
    }

    /// Sends a pbbp2 frame to a connection (all when absent); returns how many.
    #[napi]
    pub fn send_frame(&self, frame: EmulatorFrame, connection_id: Option<String>) -> u32 {
        let payload = frame.payload.map(|p| match p {
            Either::A(b) => b.to_vec(),
            Either::B(s) => s.into_bytes(),
        });
        let f = Frame {
            seq_id: frame.seq_id.unwrap_or(0) as u64,
            log_id: frame.log_id.unwrap_or(0) as u64,
            service: frame.service.unwrap_or(0),
            method: frame.method.unwrap_or(0),
            headers: frame
                .headers
                .unwrap_or_default()
                .into_iter()
                .map(|h| Header {
                    key: h.key,
                    value: h.value,
                })
                .collect(),
            payload_encoding: frame.payload_encoding,
            payload_type: frame.payload_type,
            payload,
            log_id_new: frame.log_id_new,
        };
        self.inner.send_frame(connection_id.as_deref(), f) as u32
    }

    /// Sends arbitrary bytes as one binary WebSocket message; returns how many
    /// connections got it.
    #[napi]
    pub fn send_raw(&self, bytes: Buffer, connection_id: Option<String>) -> u32 {
        self.inner
            .send_raw(connection_id.as_deref(), bytes.to_vec()) as u32
    }

    /// Sends a text WebSocket message (the protocol has none); returns how many.
    #[napi]
    pub fn send_text(&self, text: String, connection_id: Option<String>) -> u32 {
        self.inner.send_text(connection_id.as_deref(), &text) as u32
    }

    /// Stops the server: closes every connection, ends every task, frees the port.
    /// Idempotent.
    #[napi]
    pub async fn close(&self) {
        self.inner.close().await;
    }
}
