//! A *run* is the lifetime of one `start()`. It holds `connections` connection loops
//! (`Run`), each with its own discovery, liveness, backoff and state machine, sharing the
//! handler, dedupe and status; each replaces its socket on every reconnect (a socket is
//! never mutated back to life). The run ends when every loop has ended: on `close()` or
//! the signal, or when one loop fails for good, which stops the others. Every path out
//! returns an outcome, so the promise built on it always settles.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};

use super::backoff::AttemptPacer;
use super::config::TransportConfig;
use super::connection::{dial, run_session, Control, SessionContext, SessionEnd};
use super::dedupe::Dedupe;
use super::durable::DurableStore;
use super::endpoint::{discover, DiscoveryRequest, ServerConfig};
use super::error::{ErrorCode, TransportError};
use super::events::{EventHandler, Observer};
use super::frame::AckPayload;
use super::log::Log;
use super::redact::Redactor;
use super::run_state::{step, Action, Announce, RunEvent, RunState};
use super::status::{now_ms, Counters, ServerSummary, State, StatusSnapshot, StatusStore};

pub use super::run_state::StopReason;

pub type RunOutcome = Result<StopReason, TransportError>;

struct RunSlot {
    id: u64,
    /// One per connection loop, by index.
    controls: Vec<mpsc::UnboundedSender<Control>>,
    done: watch::Receiver<bool>,
}

/// One Feishu app's long connection. Cheap to share behind an `Arc`; at most one run at
/// a time.
pub struct Transport {
    cfg: Arc<TransportConfig>,
    status: Arc<StatusStore>,
    dedupe: Option<Arc<Dedupe<AckPayload>>>,
    store: Option<Arc<DurableStore>>,
    tls: Arc<rustls::ClientConfig>,
    redactor: Arc<Redactor>,
    run: Arc<Mutex<Option<RunSlot>>>,
    next_run_id: AtomicU64,
}

/// The rustls client config shared by discovery and the socket: ring provider, bundled
/// Mozilla roots, certificates always verified. `tls.caPem`/`tls.systemRoots`: see
/// [`super::tls::client_config`].
pub fn default_tls_config() -> Result<rustls::ClientConfig, TransportError> {
    super::tls::client_config(&super::tls::TlsOptions::default())
}

impl Transport {
    /// Validates `cfg` and prepares the TLS config; connects nothing.
    pub fn new(cfg: TransportConfig) -> Result<Transport, TransportError> {
        let redactor = Arc::new(Redactor::new(cfg.secrets()));
        cfg.validate().map_err(|e| e.scrubbed(&redactor))?;
        // Discovery and the socket share this config and `cfg.proxy` (core/net.rs).
        let tls = super::tls::client_config(&cfg.tls).map_err(|e| e.scrubbed(&redactor))?;
        let dedupe = cfg.dedupe.clone().map(|d| Arc::new(Dedupe::new(d)));
        // Opened here, so a SQLite file that is not a database fails the constructor.
        let store = match &cfg.dedupe {
            Some(d) => {
                DurableStore::open(&d.store, &cfg.app_id, d.ttl, cfg.handler_timeout, &cfg.tls)
                    .map_err(|e| e.scrubbed(&redactor))?
            }
            None => None,
        };
        let status = Arc::new(StatusStore::new(cfg.connections));
        if let Some(d) = &cfg.dedupe {
            status.set_store_kind(d.store.kind());
        }
        Ok(Transport {
            cfg: Arc::new(cfg),
            status,
            dedupe,
            store,
            tls: Arc::new(tls),
            redactor,
            run: Arc::new(Mutex::new(None)),
            next_run_id: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.cfg
    }

    pub fn status(&self) -> StatusSnapshot {
        self.status.snapshot()
    }

    /// Registers a run synchronously (so a `close()` right after `start()` cannot miss
    /// it) and returns the future that drives it. `ALREADY_STARTED` while one is running.
    pub fn start(
        &self,
        handler: Arc<dyn EventHandler>,
        observer: Arc<dyn Observer>,
    ) -> Result<impl Future<Output = RunOutcome> + Send + 'static, TransportError> {
        let (controls, control_rxs): (Vec<_>, Vec<_>) = (0..self.cfg.connections)
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let (done_tx, done_rx) = watch::channel(false);
        let id = self.next_run_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut slot = self.run.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_some() {
                return Err(TransportError::recoverable(
                    ErrorCode::AlreadyStarted,
                    "start() was called while this transport is already running; close() it or wait for start() to settle",
                ));
            }
            *slot = Some(RunSlot {
                id,
                controls: controls.clone(),
                done: done_rx,
            });
        }
        let log = Log::new(observer.clone(), self.cfg.log_level, self.redactor.clone());
        // The loops are polled inside the run's one future rather than spawned: dropping
        // that future (a JavaScript environment going away) must end every connection,
        // and a panic in one is caught here, per loop.
        let ready_announced = Arc::new(AtomicBool::new(false));
        let several = self.cfg.connections > 1;
        let loops: FuturesUnordered<_> = control_rxs
            .into_iter()
            .enumerate()
            .map(|(index, control)| {
                let run = Run {
                    index,
                    tag: if several {
                        format!(" [connection {index}]")
                    } else {
                        String::new()
                    },
                    cfg: self.cfg.clone(),
                    status: self.status.clone(),
                    dedupe: self.dedupe.clone(),
                    store: self.store.clone(),
                    tls: self.tls.clone(),
                    handler: handler.clone(),
                    observer: observer.clone(),
                    log: log.clone(),
                    redactor: self.redactor.clone(),
                    control,
                    machine: RunState::idle(),
                    ready_announced: ready_announced.clone(),
                };
                let (status, observer, log) = (self.status.clone(), observer.clone(), log.clone());
                let redactor = self.redactor.clone();
                async move {
                    // A panic is a bug, but it must not leave start() unsettled or settle
                    // it with something other than a FeishuTransportError: it ends the
                    // run as INTERNAL.
                    let outcome = AssertUnwindSafe(run.run())
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| {
                            let error = panicked(panic).scrubbed(&redactor);
                            log.error(|| format!("giving up: {error}"));
                            observer.status(&status.update(index, |l| {
                                l.state = State::Failed;
                                l.connection_id = None;
                                l.next_retry_at = None;
                                l.backpressure = false;
                                l.last_error = Some((&error).into());
                            }));
                            observer.error(&error);
                            Err(error)
                        });
                    (index, outcome)
                }
            })
            .collect();
        let guard = SlotGuard {
            slot: self.run.clone(),
            id,
            done: done_tx,
        };
        let drain = self.cfg.default_drain;
        Ok(async move {
            let outcome = settle_loops(loops, &controls, drain, &log).await;
            // Release the slot before the outcome is delivered, so code reacting to the
            // settled start() may call start() again at once.
            drop(guard);
            outcome
        })
    }

    /// Stops the run, if any, and waits until it has ended. Idempotent.
    pub fn close(&self, force: bool, drain: Option<Duration>) -> impl Future<Output = ()> + Send {
        self.stop(Control::Close {
            force,
            drain: drain.unwrap_or(self.cfg.default_drain),
            aborted: false,
        })
    }

    /// Stops the run as the caller's AbortSignal does: `start()` resolves `aborted`.
    pub fn abort(&self) -> impl Future<Output = ()> + Send {
        self.stop(Control::Close {
            force: false,
            drain: self.cfg.default_drain,
            aborted: true,
        })
    }

    fn stop(&self, ctrl: Control) -> impl Future<Output = ()> + Send {
        let done = {
            let slot = self.run.lock().unwrap_or_else(|p| p.into_inner());
            slot.as_ref().map(|s| {
                for c in &s.controls {
                    let _ = c.send(ctrl.clone());
                }
                s.done.clone()
            })
        };
        async move {
            if let Some(mut done) = done {
                // Err: the run's sender is gone, which also means it ended.
                let _ = done.wait_for(|d| *d).await;
            }
        }
    }

    /// Cuts connection `index`'s live socket (`None`: every connection's) without acking
    /// what is in flight; each reconnects through its backoff. Returns false when no run
    /// is active or there is no such connection.
    pub fn drop_connection(&self, reason: &str, index: Option<usize>) -> bool {
        let slot = self.run.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = slot.as_ref() else {
            return false;
        };
        let targets = match index {
            None => &s.controls[..],
            Some(i) => match s.controls.get(i) {
                Some(c) => std::slice::from_ref(c),
                None => return false,
            },
        };
        targets
            .iter()
            .all(|c| c.send(Control::Drop(reason.to_string())).is_ok())
    }

    pub fn is_running(&self) -> bool {
        self.run.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

/// Frees the run slot and wakes `close()` waiters however the run future ends, including
/// when it is dropped mid-flight (env teardown).
struct SlotGuard {
    slot: Arc<Mutex<Option<RunSlot>>>,
    id: u64,
    done: watch::Sender<bool>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().map(|s| s.id) == Some(self.id) {
            *slot = None;
        }
        let _ = self.done.send(true);
    }
}

/// Waits for every connection loop of a run and returns the run's outcome: the first loop
/// to end decides it. A loop ends on its own only by failing for good (a terminal error,
/// `maxAttempts`, `reconnect: false`, a panic), and then the others are closed as by
/// `close()` (draining for `drain`), so one app with bad credentials does not keep
/// half its sockets; a stop reaches every loop at once.
async fn settle_loops(
    mut loops: FuturesUnordered<impl Future<Output = (usize, RunOutcome)>>,
    controls: &[mpsc::UnboundedSender<Control>],
    drain: Duration,
    log: &Log,
) -> RunOutcome {
    let mut outcome = None;
    while let Some((index, result)) = loops.next().await {
        if outcome.is_some() {
            continue;
        }
        if result.is_err() && controls.len() > 1 {
            log.info(|| format!("connection {index} gave up; closing the other connections"));
            for c in controls {
                let _ = c.send(Control::Close {
                    force: false,
                    drain,
                    aborted: false,
                });
            }
        }
        outcome = Some(result);
    }
    outcome.unwrap_or(Ok(StopReason::Closed))
}

/// The INTERNAL error of a panic in a run, naming what the panic said.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> TransportError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    TransportError::terminal(
        ErrorCode::Internal,
        format!("the transport stopped on an internal error (a bug; please report it): {what}"),
    )
}

/// One connection loop of a run: discovery, dial, session, then the reconnect decision
/// of its own state machine, for connection `index`.
struct Run {
    index: usize,
    /// `" [connection i]"` in log lines when the run has several connections.
    tag: String,
    cfg: Arc<TransportConfig>,
    status: Arc<StatusStore>,
    dedupe: Option<Arc<Dedupe<AckPayload>>>,
    store: Option<Arc<DurableStore>>,
    tls: Arc<rustls::ClientConfig>,
    handler: Arc<dyn EventHandler>,
    observer: Arc<dyn Observer>,
    log: Log,
    redactor: Arc<Redactor>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Where this connection stands, as `run_state::step` last left it.
    machine: RunState,
    /// `onReady` is once per run: whichever connection is up first announces it.
    ready_announced: Arc<AtomicBool>,
}

/// A phase of the run raced against the caller's stop.
enum Raced<T> {
    Done(T),
    Stop(StopReason),
}

impl Run {
    /// Feeds `event` to the state machine ([`step`]), which alone decides what follows.
    fn step(&mut self, event: RunEvent) -> Action {
        let (next, action) = step(
            self.machine,
            event,
            self.cfg.reconnect.as_ref(),
            rand::random::<f64>(),
        );
        self.machine = next;
        action
    }

    fn transition(&self, f: impl FnOnce(&mut super::status::Lifecycle)) {
        let snap = self.status.update(self.index, f);
        self.observer.status(&snap);
    }

    /// Waits for `fut` unless the caller stops the run first. A `dropConnection()` while
    /// no socket is live has nothing to cut and is only logged.
    async fn race<T>(&mut self, fut: impl Future<Output = T>) -> Raced<T> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return Raced::Done(r),
                c = self.control.recv() => match c {
                    Some(Control::Close { aborted, .. }) => {
                        return Raced::Stop(if aborted { StopReason::Aborted } else { StopReason::Closed })
                    }
                    Some(Control::Drop(reason)) => {
                        let tag = &self.tag;
                        self.log.info(|| format!("dropConnection({reason:?}) ignored: no connection is live{tag}"));
                    }
                    None => return Raced::Stop(StopReason::Closed),
                },
            }
        }
    }

    fn stopped(&mut self, reason: StopReason) -> RunOutcome {
        self.step(RunEvent::Stop(reason));
        let tag = &self.tag;
        self.log
            .info(|| format!("stopped ({}){tag}", reason.as_str()));
        self.transition(|l| {
            l.state = State::Stopped;
            l.connection_id = None;
            l.next_retry_at = None;
        });
        Ok(reason)
    }

    fn failed(&self, error: TransportError) -> RunOutcome {
        let tag = &self.tag;
        self.log
            .error(|| format!("giving up{tag}: {error}{}", cause_text(&error)));
        self.transition(|l| {
            l.state = State::Failed;
            l.connection_id = None;
            l.next_retry_at = None;
            l.last_error = Some((&error).into());
        });
        Err(error)
    }

    async fn run(mut self) -> RunOutcome {
        super::faults::maybe_panic_in_run();
        let user_agent = self.cfg.user_agent_header();
        let mut server = ServerConfig::default();
        self.step(RunEvent::Start);
        let mut pacer = AttemptPacer::new(std::time::Instant::now());
        self.transition(|l| {
            l.state = State::Connecting;
            l.attempt = 0;
            l.next_retry_at = None;
            l.last_error = None;
        });
        loop {
            pacer.take(std::time::Instant::now());
            // A fresh URL before every connect: the ticket is single-use.
            let cfg = self.cfg.clone();
            let tls = self.tls.clone();
            let discovered = self
                .race(async {
                    let req = DiscoveryRequest {
                        domain: &cfg.domain,
                        app_id: &cfg.app_id,
                        app_secret: &cfg.app_secret,
                        user_agent: &user_agent,
                        timeout: cfg.timeouts.discovery,
                        proxy: &cfg.proxy,
                        proxy_timeout: cfg.timeouts.handshake,
                    };
                    // The `discover` option sends the request instead of the native
                    // client; the answer is classified the same way either way.
                    match &cfg.discovery_hook {
                        Some(hook) => super::discovery::discover_with(hook.get(), &req).await,
                        None => discover(&tls, &req).await,
                    }
                })
                .await;
            let connected = match discovered {
                Raced::Stop(r) => return self.stopped(r),
                Raced::Done(Err(e)) => Err(e),
                Raced::Done(Ok(endpoint)) => {
                    // The URL's access_key and ticket are credentials a server may name
                    // without their key ("invalid ticket T-1"); hide them from here on.
                    self.redactor.learn_url(&endpoint.url);
                    server.merge(&endpoint.config);
                    let summary = ServerSummary::from_config(&server);
                    self.status.update(self.index, |l| l.server = Some(summary));
                    let tls = self.tls.clone();
                    match self.race(dial(&endpoint, &cfg, &tls)).await {
                        Raced::Stop(r) => return self.stopped(r),
                        Raced::Done(r) => r.map(|ws| (ws, endpoint)),
                    }
                }
            };
            let (error, healthy) = match connected {
                Err(e) => (e, false),
                Ok((ws, endpoint)) => {
                    Counters::bump(&self.status.counters.connects);
                    let announce = self.step(RunEvent::Connected);
                    let conn_id = endpoint.device_id.clone();
                    let now = now_ms() as f64;
                    self.transition(|l| {
                        l.state = State::Connected;
                        l.connection_id = conn_id.clone();
                        l.last_connected_at = Some(now);
                        l.next_retry_at = None;
                    });
                    let tag = &self.tag;
                    self.log.info(|| {
                        format!(
                            "connected{tag}{}",
                            conn_id
                                .as_deref()
                                .map(|d| format!(" [conn_id={d}]"))
                                .unwrap_or_default()
                        )
                    });
                    match announce {
                        Action::Announce(Announce::Reconnected) => {
                            Counters::bump(&self.status.counters.reconnects);
                            self.observer.reconnected(self.index);
                        }
                        // This connection's first; the run's first only once.
                        _ => {
                            if !self.ready_announced.swap(true, Ordering::Relaxed) {
                                self.observer.ready(self.index);
                            }
                        }
                    }
                    let (status, index) = (self.status.clone(), self.index);
                    let on_server_config = move |c: &ServerConfig| {
                        let summary = ServerSummary::from_config(c);
                        status.update(index, |l| l.server = Some(summary));
                    };
                    // The session reports health from inside its loop; what health means for
                    // the attempt counter is the machine's rule, worked out here for it.
                    let (as_healthy, _) = step(self.machine, RunEvent::Healthy, None, 0.0);
                    let status = self.status.clone();
                    let on_healthy = move || {
                        status.update(index, |l| l.attempt = as_healthy.attempt);
                    };
                    let (status, observer) = (self.status.clone(), self.observer.clone());
                    let on_backpressure = move |on: bool| {
                        observer.status(&status.update(index, |l| l.backpressure = on));
                    };
                    let ctx = SessionContext {
                        cfg: &cfg,
                        status: &self.status,
                        handler: &self.handler,
                        dedupe: self.dedupe.as_ref(),
                        store: self.store.as_ref(),
                        log: &self.log,
                        server: &mut server,
                        on_server_config: &on_server_config,
                        on_healthy: &on_healthy,
                        on_backpressure: &on_backpressure,
                    };
                    let end = run_session(ws, &endpoint, ctx, &mut self.control).await;
                    let now = now_ms() as f64;
                    self.status.update(self.index, |l| {
                        l.last_disconnected_at = Some(now);
                        l.connection_id = None;
                        // The socket it held back is gone; nothing waits on a slot now.
                        l.backpressure = false;
                    });
                    match end {
                        SessionEnd::Stopped { aborted } => {
                            return self.stopped(if aborted {
                                StopReason::Aborted
                            } else {
                                StopReason::Closed
                            })
                        }
                        SessionEnd::Lost { error, healthy } => (error, healthy),
                    }
                }
            };

            // A failure: report it; the machine says whether to give up or wait and retry.
            // Patterns (tokens, `key=value` secrets) are gone at construction; the literal
            // secrets (the app secret, which a server may echo, and the socket URL's
            // access_key and ticket, which it may name without their key) only here.
            let error = error.scrubbed(&self.redactor);
            let tag = &self.tag;
            self.log.warn(|| format!("{error}{tag}"));
            self.observer.error(&error);
            let (attempt, delay) = match self.step(RunEvent::Failed {
                error: error.clone(),
                healthy,
            }) {
                Action::Retry { attempt, delay } => (attempt, delay),
                Action::GiveUp(e) => {
                    if e != error {
                        // RECONNECT_EXHAUSTED: reported too, after the error it wraps.
                        let e = e.scrubbed(&self.redactor);
                        self.observer.error(&e);
                        return self.failed(e);
                    }
                    return self.failed(e);
                }
                // A running run's failure always retries or gives up (run_state's table).
                _ => return self.failed(error),
            };
            // Whatever the options (`initialDelayMs: 0, maxDelayMs: 0`) and however fast a
            // server fails, no more than a few attempts a second.
            let delay = delay.max(pacer.wait(std::time::Instant::now()));
            let retry_at = now_ms() as f64 + delay.as_millis() as f64;
            let summary = (&error).into();
            self.transition(|l| {
                l.state = State::Reconnecting;
                l.attempt = attempt;
                l.next_retry_at = Some(retry_at);
                l.last_error = Some(summary);
            });
            let tag = &self.tag;
            self.log.info(|| {
                format!(
                    "reconnecting in {} ms (attempt {attempt}){tag}",
                    delay.as_millis()
                )
            });
            self.observer
                .reconnecting(self.index, attempt, delay, Some(&error));
            if let Raced::Stop(r) = self.race(tokio::time::sleep(delay)).await {
                return self.stopped(r);
            }
        }
    }
}

fn cause_text(e: &TransportError) -> String {
    e.cause
        .as_ref()
        .map(|c| format!(" (cause: {c})"))
        .unwrap_or_default()
}
