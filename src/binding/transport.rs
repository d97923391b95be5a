//! `NativeTransport`: the napi face of `core::supervisor::Transport`. It converts options,
//! wraps the JavaScript callbacks in weak threadsafe functions, and reports outcomes as
//! plain values; `index.js` turns those into the public `FeishuTransport` API (errors as
//! `FeishuTransportError`, the AbortSignal, the callback fan-out).

use std::sync::{Arc, Weak};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use serde_json::json;

use crate::core::backoff::BackoffPolicy;
use crate::core::config::{LogLevel, TransportConfig};
use crate::core::dedupe::DedupeConfig;
use crate::core::endpoint::Domain;
use crate::core::error::TransportError;
use crate::core::events::{EventHandler, HandlerFuture, InboundEvent, Observer};
use crate::core::proxy::{ProxyMode, ProxyUrl};
use crate::core::status::StatusSnapshot;
use crate::core::supervisor::Transport;

/// Arguments of the internal event callback: `(payload, messageId, traceId, receivedAt)`.
/// The payload crosses as the JSON text Feishu sent; JavaScript parses it, which is
/// cheaper than building the object property by property through napi.
type EventArgs = FnArgs<(String, String, Option<String>, f64)>;

/// The internal event callback as Rust sees it: weak (it never keeps Node alive by
/// itself), `CalleeHandled = false` (plain arguments), resolving to the JSON text of the
/// handler's result or `null`.
type EventCallback =
    ThreadsafeFunction<EventArgs, Promise<Option<String>>, EventArgs, Status, false, true>;

/// Arguments of the internal lifecycle callback: `(kind, json)`.
type LifecycleArgs = FnArgs<(String, String)>;
type LifecycleCallback = ThreadsafeFunction<LifecycleArgs, (), LifecycleArgs, Status, false, true>;

/// Options of the native transport, flattened by `index.js` from the public options.
#[napi(object, object_to_js = false)]
pub struct NativeTransportOptions {
    pub app_id: String,
    pub app_secret: String,
    pub domain: Option<String>,
    pub user_agent: Option<String>,
    pub reconnect: Option<bool>,
    pub initial_delay_ms: Option<f64>,
    pub max_delay_ms: Option<f64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
    pub max_attempts: Option<f64>,
    pub ping_interval_ms: Option<f64>,
    pub discovery_timeout_ms: Option<f64>,
    pub handshake_timeout_ms: Option<f64>,
    pub pong_timeout_ms: Option<f64>,
    pub close_timeout_ms: Option<f64>,
    pub max_concurrent_handlers: Option<f64>,
    pub dedupe: Option<bool>,
    pub dedupe_ttl_ms: Option<f64>,
    pub dedupe_max_entries: Option<f64>,
    pub log_level: Option<String>,
    /// `'env'` (`proxy: undefined`, the default), `'none'` (`proxy: null`) or `'url'`
    /// (`proxy` holds the URL). Set by `index.js`, which sees undefined and null apart.
    pub proxy_mode: Option<String>,
    pub proxy: Option<String>,
    /// `tls.caPem`, as text (`index.js` decodes a Buffer).
    pub tls_ca_pem: Option<String>,
    pub tls_system_roots: Option<bool>,
}

/// A stable error code as the `code` property of a thrown JS error.
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl From<Status> for Code {
    fn from(_: Status) -> Self {
        Code("INVALID_CONFIG")
    }
}

fn invalid(msg: String) -> TransportError {
    TransportError::invalid_config(msg)
}

fn ms(name: &str, v: Option<f64>) -> std::result::Result<Option<Duration>, TransportError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && (0.0..=2_147_483_647.0).contains(&x) => {
            Ok(Some(Duration::from_millis(x as u64)))
        }
        Some(x) => Err(invalid(format!(
            "{name} must be a number of milliseconds between 0 and 2147483647, got {x}"
        ))),
    }
}

fn count(name: &str, v: Option<f64>, min: f64) -> std::result::Result<Option<u64>, TransportError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x.fract() == 0.0 && (min..=4_294_967_295.0).contains(&x) => {
            Ok(Some(x as u64))
        }
        Some(x) => Err(invalid(format!(
            "{name} must be a whole number of at least {min}, got {x}"
        ))),
    }
}

/// Builds the core config from the flattened options; every rejection names its option.
pub fn config_from_options(
    o: NativeTransportOptions,
) -> std::result::Result<TransportConfig, TransportError> {
    let domain = Domain::parse(o.domain.as_deref())?;
    let mut cfg = TransportConfig::new(o.app_id, o.app_secret, domain);
    cfg.user_agent = o.user_agent;
    if o.reconnect == Some(false) {
        cfg.reconnect = None;
    } else {
        let mut p = BackoffPolicy::default();
        if let Some(d) = ms("reconnect.initialDelayMs", o.initial_delay_ms)? {
            p.initial = d;
        }
        if let Some(d) = ms("reconnect.maxDelayMs", o.max_delay_ms)? {
            p.max = d;
        }
        if let Some(m) = o.multiplier {
            p.multiplier = m;
        }
        if let Some(j) = o.jitter {
            p.jitter = j;
        }
        p.max_attempts = count("reconnect.maxAttempts", o.max_attempts, 1.0)?.map(|n| n as u32);
        cfg.reconnect = Some(p);
    }
    cfg.ping_interval = ms("pingIntervalMs", o.ping_interval_ms)?;
    if let Some(d) = ms("timeouts.discoveryMs", o.discovery_timeout_ms)? {
        cfg.timeouts.discovery = d;
    }
    if let Some(d) = ms("timeouts.handshakeMs", o.handshake_timeout_ms)? {
        cfg.timeouts.handshake = d;
    }
    if let Some(d) = ms("timeouts.pongMs", o.pong_timeout_ms)? {
        cfg.timeouts.pong = d;
    }
    if let Some(d) = ms("timeouts.closeMs", o.close_timeout_ms)? {
        cfg.timeouts.close = d;
    }
    if let Some(n) = count("maxConcurrentHandlers", o.max_concurrent_handlers, 1.0)? {
        cfg.max_concurrent_handlers = n as usize;
    }
    if o.dedupe == Some(false) {
        cfg.dedupe = None;
    } else {
        let mut d = DedupeConfig::default();
        if let Some(t) = ms("dedupe.ttlMs", o.dedupe_ttl_ms)? {
            d.ttl = t;
        }
        if let Some(n) = count("dedupe.maxEntries", o.dedupe_max_entries, 1.0)? {
            d.max_entries = n as usize;
        }
        cfg.dedupe = Some(d);
    }
    cfg.proxy = match (o.proxy_mode.as_deref(), o.proxy) {
        (Some("none"), _) => ProxyMode::Direct,
        // `TransportConfig::new` captured the environment already.
        (Some("env"), _) | (None, None) => cfg.proxy,
        (Some("url") | None, url) => ProxyMode::Fixed(
            ProxyUrl::parse(url.as_deref().unwrap_or(""))
                .map_err(|why| invalid(format!("proxy {why}")))?,
        ),
        (Some(other), _) => {
            return Err(invalid(format!(
                "proxyMode must be env, none or url, got {other:?}"
            )))
        }
    };
    cfg.tls.ca_pem = o.tls_ca_pem;
    cfg.tls.system_roots = o.tls_system_roots.unwrap_or(false);
    if let Some(level) = o.log_level.as_deref() {
        cfg.log_level = LogLevel::parse(level).ok_or_else(|| {
            invalid(format!(
                "logLevel must be one of debug, info, warn, error, silent; got {level:?}"
            ))
        })?;
    }
    Ok(cfg)
}

/// The JSON form of an error that `index.js` turns into a `FeishuTransportError`.
pub fn error_json(e: &TransportError) -> serde_json::Value {
    json!({
        "code": e.code.as_str(),
        "message": e.message,
        "terminal": e.terminal,
        "feishuCode": e.feishu_code,
        "cause": e.cause.as_deref().map(error_json),
    })
}

/// How `start()` ended, as `index.js` reads it: `reason` when it stopped, `error` (JSON)
/// when it failed.
#[napi(object)]
pub struct NativeRunResult {
    pub reason: Option<String>,
    pub error: Option<String>,
}

/// The native transport. Use `FeishuTransport` from the package entry instead.
#[napi]
pub struct NativeTransport {
    inner: Arc<Transport>,
}

struct JsHandler {
    callback: EventCallback,
}

impl EventHandler for JsHandler {
    fn handle(&self, event: InboundEvent) -> HandlerFuture {
        let args: EventArgs = (
            event.payload,
            event.message_id,
            event.trace_id,
            event.received_at_ms as f64,
        )
            .into();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Queued here, synchronously, so handlers are called in arrival order. The
        // with-callback variant hands a synchronous throw to us as an Err (plain
        // `call_async` would route it to napi_fatal_exception and kill the process).
        let status = self.callback.call_with_return_value(
            args,
            ThreadsafeFunctionCallMode::NonBlocking,
            move |ret: Result<Promise<Option<String>>>, _env| {
                let _ = tx.send(ret);
                Ok(())
            },
        );
        Box::pin(async move {
            if status != Status::Ok {
                return Err(format!("the event callback could not be called ({status})"));
            }
            let promise = rx
                .await
                .map_err(|_| {
                    "the JavaScript environment went away before the handler ran".to_string()
                })?
                .map_err(|e| e.reason.clone())?;
            promise.await.map_err(|e| e.reason.clone())
        })
    }
}

struct JsObserver {
    callback: LifecycleCallback,
}

impl JsObserver {
    fn emit(&self, kind: &str, data: serde_json::Value) {
        // NonBlocking: a lifecycle note must never stall the connection task. The JS side
        // catches everything its user callbacks throw.
        let _ = self.callback.call(
            (kind.to_string(), data.to_string()).into(),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    }
}

impl Observer for JsObserver {
    fn ready(&self) {
        self.emit("ready", serde_json::Value::Null);
    }
    fn reconnecting(&self, attempt: u32, delay: Duration, error: Option<&TransportError>) {
        self.emit(
            "reconnecting",
            json!({ "attempt": attempt, "delayMs": delay.as_millis() as f64, "error": error.map(error_json) }),
        );
    }
    fn reconnected(&self) {
        self.emit("reconnected", serde_json::Value::Null);
    }
    fn error(&self, error: &TransportError) {
        self.emit("error", error_json(error));
    }
    fn status(&self, status: &StatusSnapshot) {
        self.emit("status", serde_json::to_value(status).unwrap_or_default());
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.emit(
            "log",
            json!({ "level": level.as_str(), "message": message }),
        );
    }
}

#[napi]
impl NativeTransport {
    /// Validates the options; throws an error with `code: 'INVALID_CONFIG'` when they
    /// cannot work. Connects nothing.
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, options: NativeTransportOptions) -> Result<Self, Code> {
        let cfg = config_from_options(options)
            .map_err(|e| Error::new(Code(e.code.as_str()), e.message))?;
        let inner = Arc::new(
            Transport::new(cfg).map_err(|e| Error::new(Code(e.code.as_str()), e.message))?,
        );
        // If this JavaScript environment goes away (a worker terminated mid-run), stop
        // the run so nothing calls into a dead environment.
        let weak: Weak<Transport> = Arc::downgrade(&inner);
        let _ = env.add_env_cleanup_hook(weak, |weak| {
            if let Some(t) = weak.upgrade() {
                let close = t.close(true, Some(Duration::ZERO));
                napi::bindgen_prelude::spawn(close);
            }
        });
        Ok(NativeTransport { inner })
    }

    /// Starts a run. The promise settles when the run ends: `{ reason }` after close or
    /// abort, `{ error }` (JSON) when it failed or was already started.
    #[napi(
        ts_args_type = "onEvent: (payload: string, messageId: string, traceId: string | null, receivedAt: number) => Promise<string | null | undefined>, onLifecycle: (kind: string, json: string) => void",
        ts_return_type = "Promise<NativeRunResult>"
    )]
    pub fn start<'env>(
        &self,
        env: &'env Env,
        on_event: Function<'env, EventArgs, Promise<Option<String>>>,
        on_lifecycle: Function<'env, LifecycleArgs, ()>,
    ) -> Result<PromiseRaw<'env, NativeRunResult>> {
        let callback: EventCallback = on_event
            .build_threadsafe_function::<EventArgs>()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        let lifecycle: LifecycleCallback = on_lifecycle
            .build_threadsafe_function::<LifecycleArgs>()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        let handler = Arc::new(JsHandler { callback });
        let observer = Arc::new(JsObserver {
            callback: lifecycle,
        });
        let started = self.inner.start(handler, observer);
        env.spawn_future(async move {
            let outcome = match started {
                Err(e) => Err(e),
                // The run owns the callbacks; they are released when it ends, so a
                // settled start() leaves nothing holding the handler's closure.
                Ok(run) => run.await,
            };
            Ok(match outcome {
                Ok(reason) => NativeRunResult {
                    reason: Some(reason.as_str().to_string()),
                    error: None,
                },
                Err(e) => NativeRunResult {
                    reason: None,
                    error: Some(error_json(&e).to_string()),
                },
            })
        })
    }

    /// Stops the run (if any) and resolves once it has ended.
    #[napi]
    pub async fn close(&self, force: Option<bool>, drain_ms: Option<f64>) -> Result<()> {
        let drain = match ms("drainMs", drain_ms) {
            Ok(d) => d,
            Err(e) => return Err(Error::new(Status::InvalidArg, e.message)),
        };
        self.inner.close(force.unwrap_or(false), drain).await;
        Ok(())
    }

    /// Stops the run as an AbortSignal does; `start()` resolves `{ reason: 'aborted' }`.
    #[napi]
    pub async fn abort(&self) -> Result<()> {
        self.inner.abort().await;
        Ok(())
    }

    /// Cuts the live socket without acking what is in flight; the run reconnects.
    /// Returns false when no run is active.
    #[napi]
    pub fn drop_connection(&self, reason: Option<String>) -> bool {
        self.inner
            .drop_connection(reason.as_deref().unwrap_or("dropConnection() called"))
    }

    /// The status snapshot as JSON.
    #[napi]
    pub fn status_json(&self) -> String {
        serde_json::to_string(&self.inner.status()).unwrap_or_else(|_| "{}".into())
    }

    /// Whether a run is active.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.inner.is_running()
    }
}
