//! Proxies, domains and TLS end to end on loopback: discovery and the WebSocket against a
//! minimal Feishu stand-in, through HTTP CONNECT, HTTPS and SOCKS5 test proxies that count
//! what passed through them.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feishu_transport::core::backoff::BackoffPolicy;
use feishu_transport::core::config::{LogLevel, TransportConfig};
use feishu_transport::core::connection::{dial, WsStream};
use feishu_transport::core::endpoint::{discover, DiscoveryRequest, Domain, Endpoint};
use feishu_transport::core::error::{ErrorCode, TransportError};
use feishu_transport::core::events::{EventHandler, InboundEvent, Observer, Reply};
use feishu_transport::core::proxy::{EnvProxies, ProxyMode, ProxyUrl};
use feishu_transport::core::supervisor::Transport;
use feishu_transport::core::tls;

use support::certs::TestCa;
use support::feishu::{self, FakeFeishu};
use support::proxies::{closed_port, Behaviour, Kind, Options, TestProxy};

const APP_ID: &str = "cli_a1b2c3d4e5f60718";
const PASSWORD: &str = "pr0xy-pa55word";

fn config(domain: &str, proxy: ProxyMode, ca_pem: Option<&str>) -> TransportConfig {
    let mut cfg = TransportConfig::new(APP_ID, "app-s3cret", Domain::parse(Some(domain)).unwrap());
    cfg.proxy = proxy;
    cfg.tls.ca_pem = ca_pem.map(str::to_string);
    cfg.timeouts.discovery = Duration::from_secs(5);
    cfg.timeouts.handshake = Duration::from_secs(5);
    cfg
}

fn fixed(url: &str) -> ProxyMode {
    ProxyMode::Fixed(ProxyUrl::parse(url).unwrap())
}

fn env(vars: &[(&str, &str)]) -> ProxyMode {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ProxyMode::environment(EnvProxies::from_lookup(|k| map.get(k).cloned()))
}

async fn discover_only(cfg: &TransportConfig) -> Result<Endpoint, TransportError> {
    cfg.validate()?;
    let tls = Arc::new(tls::client_config(&cfg.tls)?);
    let ua = cfg.user_agent_header();
    let req = DiscoveryRequest {
        domain: &cfg.domain,
        app_id: &cfg.app_id,
        app_secret: &cfg.app_secret,
        user_agent: &ua,
        timeout: cfg.timeouts.discovery,
        proxy: &cfg.proxy,
        proxy_timeout: cfg.timeouts.handshake,
    };
    discover(&tls, &req).await
}

/// Discovery, then the socket, exactly as one attempt of the run does them.
async fn connect(cfg: &TransportConfig) -> Result<(Endpoint, WsStream), TransportError> {
    let ep = discover_only(cfg).await?;
    let tls = Arc::new(tls::client_config(&cfg.tls)?);
    let ws = dial(&ep, cfg, &tls).await?;
    Ok((ep, ws))
}

fn host_of(domain: &str) -> String {
    let u = url::Url::parse(domain).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
}

#[tokio::test]
async fn discovery_and_socket_both_tunnel_through_an_http_connect_proxy() {
    for auth in [None, Some(("alice", PASSWORD))] {
        let fake = FakeFeishu::start(feishu::Options::default()).await;
        let mut o = Options::new(Kind::Http);
        if let Some((u, p)) = auth {
            o = o.auth(u, p);
        }
        let proxy = TestProxy::start(o).await;
        let cfg = config(&fake.domain, fixed(&proxy.url_with(auth)), None);
        connect(&cfg).await.unwrap();
        assert_eq!(
            proxy.tunnels(),
            vec![host_of(&fake.domain), fake.ws_addr.to_string()],
            "discovery first, then the socket"
        );
        support::wait_for("the socket", 5000, || fake.sockets() == 1).await;
        fake.stop();
    }
}

#[tokio::test]
async fn discovery_and_socket_both_tunnel_through_socks5() {
    // socks5:// with credentials, target sent as an address
    let fake = FakeFeishu::start(feishu::Options::default()).await;
    let proxy = TestProxy::start(Options::new(Kind::Socks5).auth("bob", PASSWORD)).await;
    let cfg = config(
        &fake.domain,
        fixed(&proxy.url_with(Some(("bob", PASSWORD)))),
        None,
    );
    connect(&cfg).await.unwrap();
    assert_eq!(
        proxy.tunnels(),
        vec![host_of(&fake.domain), fake.ws_addr.to_string()]
    );
    fake.stop();

    // socks5h:// without credentials: the names go to the proxy, which resolves them
    let fake = FakeFeishu::start(feishu::Options {
        host: Some("localhost".into()),
        ..Default::default()
    })
    .await;
    let proxy = TestProxy::start(Options::new(Kind::Socks5)).await;
    let url = proxy.url().replace("socks5://", "socks5h://");
    let cfg = config(&fake.domain, fixed(&url), None);
    connect(&cfg).await.unwrap();
    assert_eq!(
        proxy.tunnels(),
        vec![
            host_of(&fake.domain),
            format!("localhost:{}", fake.ws_addr.port())
        ]
    );
    fake.stop();
}

#[tokio::test]
async fn an_https_proxy_with_a_private_ca_carries_https_and_wss() {
    let ca = TestCa::new();
    let fake = FakeFeishu::start(feishu::Options {
        tls: Some(ca.server_config()),
        ws_tls: Some(ca.server_config()),
        ..Default::default()
    })
    .await;
    assert!(fake.domain.starts_with("https://"));
    let proxy = TestProxy::start(
        Options::new(Kind::Https)
            .tls(ca.server_config())
            .auth("carol", PASSWORD),
    )
    .await;
    let cfg = config(
        &fake.domain,
        fixed(&proxy.url_with(Some(("carol", PASSWORD)))),
        Some(&ca.pem),
    );
    let (ep, _ws) = connect(&cfg).await.unwrap();
    assert!(ep.url.starts_with("wss://"));
    assert_eq!(
        proxy.tunnels().len(),
        2,
        "TLS to the proxy, TLS to Feishu inside"
    );

    // the proxy's own certificate is verified like any other
    let cfg = config(
        &fake.domain,
        fixed(&proxy.url_with(Some(("carol", PASSWORD)))),
        None,
    );
    let e = discover_only(&cfg).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TlsError, "{e}");
    assert!(e.message.contains("the proxy https://127.0.0.1:"), "{e}");
    assert!(!e.message.contains(PASSWORD));
    fake.stop();
}

#[tokio::test]
async fn the_environment_proxy_applies_and_no_proxy_bypasses_it() {
    let fake = FakeFeishu::start(feishu::Options::default()).await;
    let proxy = TestProxy::start(Options::new(Kind::Http)).await;

    // http targets (the emulator's http:// domain) use HTTP_PROXY
    let cfg = config(&fake.domain, env(&[("HTTP_PROXY", &proxy.url())]), None);
    connect(&cfg).await.unwrap();
    assert_eq!(proxy.tunnels().len(), 2);

    // HTTPS_PROXY is for https targets only: nothing goes through it here
    let cfg = config(&fake.domain, env(&[("HTTPS_PROXY", &proxy.url())]), None);
    connect(&cfg).await.unwrap();
    assert_eq!(proxy.tunnels().len(), 2);

    // ALL_PROXY covers what the specific variables do not
    let cfg = config(&fake.domain, env(&[("all_proxy", &proxy.url())]), None);
    connect(&cfg).await.unwrap();
    assert_eq!(proxy.tunnels().len(), 4);

    // NO_PROXY by host, by host:port, by CIDR: direct
    let port = url::Url::parse(&fake.domain).unwrap().port().unwrap();
    for no_proxy in ["127.0.0.1", "127.0.0.0/8", "*"] {
        let cfg = config(
            &fake.domain,
            env(&[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", no_proxy)]),
            None,
        );
        connect(&cfg).await.unwrap();
        assert_eq!(proxy.tunnels().len(), 4, "NO_PROXY={no_proxy}");
    }
    // by port: discovery is direct, the socket (another port) still tunnels
    let cfg = config(
        &fake.domain,
        env(&[
            ("HTTP_PROXY", &proxy.url()),
            ("no_proxy", &format!("127.0.0.1:{port}")),
        ]),
        None,
    );
    connect(&cfg).await.unwrap();
    assert_eq!(proxy.tunnels()[4..], [fake.ws_addr.to_string()]);
    fake.stop();
}

#[tokio::test]
async fn no_proxy_is_decided_per_host_for_discovery_and_socket() {
    // discovery on "localhost", the socket on 127.0.0.1; NO_PROXY lists only localhost
    let fake = FakeFeishu::start(feishu::Options {
        host: Some("localhost".into()),
        ws_host: Some("127.0.0.1".into()),
        ..Default::default()
    })
    .await;
    let proxy = TestProxy::start(Options::new(Kind::Socks5)).await;
    let cfg = config(
        &fake.domain,
        env(&[("ALL_PROXY", &proxy.url()), ("NO_PROXY", "localhost")]),
        None,
    );
    connect(&cfg).await.unwrap();
    assert_eq!(proxy.tunnels(), vec![fake.ws_addr.to_string()]);
    assert_eq!(fake.discovery_paths().len(), 1);
    fake.stop();
}

#[tokio::test]
async fn direct_mode_ignores_the_environment() {
    let fake = FakeFeishu::start(feishu::Options::default()).await;
    let proxy = TestProxy::start(Options::new(Kind::Http)).await;
    // what `proxy: null` builds, whatever the environment holds
    let cfg = config(&fake.domain, ProxyMode::Direct, None);
    connect(&cfg).await.unwrap();
    assert_eq!(proxy.connections(), 0);
    fake.stop();
}

#[tokio::test]
async fn an_unusable_environment_proxy_is_a_config_error_naming_the_variable() {
    let cfg = config(
        "http://127.0.0.1:1",
        env(&[("http_proxy", &format!("socks4://u:{PASSWORD}@127.0.0.1:1"))]),
        None,
    );
    let e = cfg.validate().unwrap_err();
    assert_eq!((e.code, e.terminal), (ErrorCode::InvalidConfig, true));
    assert!(e.message.contains("http_proxy"), "{e}");
    assert!(!e.message.contains(PASSWORD));
}

/// Credentials a client puts in the proxy URL.
type Credentials = Option<(&'static str, &'static str)>;

/// A proxy failure: the code, the proxy named, the password absent, and fast.
fn assert_proxy_error(e: &TransportError, proxy_port: u16, what: &str) {
    assert_eq!(e.code, ErrorCode::ProxyError, "{e}");
    assert!(!e.terminal, "{e}");
    assert!(
        e.message.contains(&format!("127.0.0.1:{proxy_port}")),
        "names the proxy: {e}"
    );
    assert!(e.message.contains(what), "says {what:?}: {e}");
    assert!(!e.message.contains(PASSWORD), "{e}");
}

#[tokio::test]
async fn failing_proxies_give_proxy_error_saying_what_happened() {
    let fake = FakeFeishu::start(feishu::Options::default()).await;
    let cases: Vec<(Options, Credentials, &str)> = vec![
        (
            Options::new(Kind::Http).auth("u", "right"),
            None,
            "requires authentication (HTTP 407 Proxy Authentication Required)",
        ),
        (
            Options::new(Kind::Http).auth("u", "right"),
            Some(("u", PASSWORD)),
            "rejected the credentials",
        ),
        (
            Options::new(Kind::Http).behaviour(Behaviour::Refuse),
            None,
            "it answered HTTP 403 Forbidden",
        ),
        (
            Options::new(Kind::Http).behaviour(Behaviour::Garbage),
            Some(("u", PASSWORD)),
            "answered something that is not HTTP: \"garbage, not a proxy",
        ),
        (
            Options::new(Kind::Socks5).auth("u", "right"),
            None,
            "requires authentication",
        ),
        (
            Options::new(Kind::Socks5).auth("u", "right"),
            Some(("u", PASSWORD)),
            "rejected the username and password",
        ),
        (
            Options::new(Kind::Socks5).behaviour(Behaviour::Refuse),
            None,
            "connection not allowed by ruleset (SOCKS5 reply 0x02)",
        ),
        (
            Options::new(Kind::Socks5).behaviour(Behaviour::Garbage),
            None,
            "answered something that is not SOCKS5",
        ),
    ];
    for (o, auth, what) in cases {
        let kind = o.kind;
        let proxy = TestProxy::start(o).await;
        let cfg = config(&fake.domain, fixed(&proxy.url_with(auth)), None);
        let e = discover_only(&cfg).await.unwrap_err();
        assert_proxy_error(&e, proxy.addr.port(), what);
        assert_eq!(proxy.connections(), 1, "{kind:?} {what}");
    }
    // nothing listening at all
    for scheme in ["http", "socks5h"] {
        let port = closed_port().await;
        let cfg = config(
            &fake.domain,
            fixed(&format!("{scheme}://u:{PASSWORD}@127.0.0.1:{port}")),
            None,
        );
        let e = discover_only(&cfg).await.unwrap_err();
        assert_proxy_error(&e, port, "could not be reached");
    }
    assert!(fake.discovery_paths().is_empty());
    fake.stop();
}

#[tokio::test]
async fn a_silent_proxy_is_a_proxy_error_within_the_handshake_timeout() {
    let fake = FakeFeishu::start(feishu::Options::default()).await;
    for kind in [Kind::Http, Kind::Socks5] {
        let proxy = TestProxy::start(Options::new(kind).behaviour(Behaviour::Silent)).await;
        // the handshake timeout bounds the proxy, even when discovery allows longer
        let mut cfg = config(&fake.domain, fixed(&proxy.url()), None);
        cfg.timeouts.handshake = Duration::from_millis(300);
        cfg.timeouts.discovery = Duration::from_secs(10);
        let t0 = Instant::now();
        let e = discover_only(&cfg).await.unwrap_err();
        assert_proxy_error(&e, proxy.addr.port(), "did not open a tunnel");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        // and a shorter discovery timeout still reports the proxy, not a timeout
        cfg.timeouts.handshake = Duration::from_secs(10);
        cfg.timeouts.discovery = Duration::from_millis(300);
        let e = discover_only(&cfg).await.unwrap_err();
        assert_proxy_error(&e, proxy.addr.port(), "within 300 ms");
    }
    fake.stop();
}

#[tokio::test]
async fn a_proxy_failing_the_socket_is_a_proxy_error_too() {
    // discovery direct (NO_PROXY=localhost), the socket through a silent, then a refusing
    // proxy: dial reports the proxy, not a handshake timeout
    let fake = FakeFeishu::start(feishu::Options {
        host: Some("localhost".into()),
        ws_host: Some("127.0.0.1".into()),
        ..Default::default()
    })
    .await;
    for behaviour in [Behaviour::Silent, Behaviour::Refuse] {
        let proxy = TestProxy::start(Options::new(Kind::Http).behaviour(behaviour)).await;
        let mut cfg = config(
            &fake.domain,
            env(&[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", "localhost")]),
            None,
        );
        cfg.timeouts.handshake = Duration::from_millis(300);
        let ep = discover_only(&cfg).await.unwrap();
        let tls = Arc::new(tls::client_config(&cfg.tls).unwrap());
        let t0 = Instant::now();
        let e = dial(&ep, &cfg, &tls).await.unwrap_err();
        assert_proxy_error(&e, proxy.addr.port(), "");
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert_eq!(proxy.requests(), vec![fake.ws_addr.to_string()]);
    }
    fake.stop();
}

#[derive(Default)]
struct Seen {
    errors: Mutex<Vec<TransportError>>,
    logs: Mutex<Vec<String>>,
    ready: Mutex<bool>,
}

struct Obs(Arc<Seen>);

impl Observer for Obs {
    fn ready(&self, _connection: usize) {
        *self.0.ready.lock().unwrap() = true;
    }
    fn error(&self, e: &TransportError) {
        self.0.errors.lock().unwrap().push(e.clone());
    }
    fn log(&self, _level: LogLevel, message: &str) {
        self.0.logs.lock().unwrap().push(message.to_string());
    }
}

struct NoopHandler;

impl EventHandler for NoopHandler {
    fn handle(&self, _event: InboundEvent<'_>, reply: Reply) {
        reply.send(Ok(None));
    }
}

#[tokio::test]
async fn the_run_retries_a_refusing_proxy_until_it_lets_through() {
    let fake = FakeFeishu::start(feishu::Options::default()).await;
    let proxy = TestProxy::start(
        Options::new(Kind::Http)
            .auth("dave", PASSWORD)
            .refuse_first(2),
    )
    .await;
    let mut cfg = config(
        &fake.domain,
        fixed(&proxy.url_with(Some(("dave", PASSWORD)))),
        None,
    );
    cfg.log_level = LogLevel::Debug;
    cfg.reconnect = Some(BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts: None,
    });
    let transport = Transport::new(cfg).unwrap();
    let seen = Arc::new(Seen::default());
    let run = transport
        .start(Arc::new(NoopHandler), Arc::new(Obs(seen.clone())))
        .unwrap();
    let run = tokio::spawn(run);
    support::wait_for("ready", 10_000, || *seen.ready.lock().unwrap()).await;
    {
        let errors = seen.errors.lock().unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
        for e in errors.iter() {
            assert_proxy_error(e, proxy.addr.port(), "HTTP 403 Forbidden");
        }
    }
    assert_eq!(
        proxy.tunnels().len(),
        2,
        "discovery and socket of the third attempt"
    );
    transport.close(true, None).await;
    run.await.unwrap().unwrap();
    let logs = seen.logs.lock().unwrap();
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|l| !l.contains(PASSWORD)), "{logs:?}");
    fake.stop();
}

#[tokio::test]
async fn tls_with_a_private_ca_connects_only_when_the_ca_is_given() {
    let ca = TestCa::new();
    let fake = FakeFeishu::start(feishu::Options {
        tls: Some(ca.server_config()),
        ws_tls: Some(ca.server_config()),
        ..Default::default()
    })
    .await;
    let cfg = config(&fake.domain, ProxyMode::Direct, Some(&ca.pem));
    let (ep, _ws) = connect(&cfg).await.unwrap();
    assert!(ep.url.starts_with("wss://"));

    let cfg = config(&fake.domain, ProxyMode::Direct, None);
    let e = discover_only(&cfg).await.unwrap_err();
    assert_eq!((e.code, e.terminal), (ErrorCode::TlsError, false), "{e}");
    assert!(
        e.message
            .contains(&format!("TLS with {} failed", host_of(&fake.domain))),
        "{e}"
    );
    assert!(
        e.message.contains("not issued by a trusted authority"),
        "{e}"
    );

    // another CA's certificate is no better
    let other = TestCa::new();
    let cfg = config(&fake.domain, ProxyMode::Direct, Some(&other.pem));
    assert_eq!(
        discover_only(&cfg).await.unwrap_err().code,
        ErrorCode::TlsError
    );
    fake.stop();
}

#[tokio::test]
async fn a_socket_certificate_failure_is_a_tls_error_naming_the_socket_host() {
    let ca = TestCa::new();
    // plain discovery (the emulator's http:// domain), a wss:// socket
    let fake = FakeFeishu::start(feishu::Options {
        ws_tls: Some(ca.server_config()),
        ..Default::default()
    })
    .await;
    let cfg = config(&fake.domain, ProxyMode::Direct, None);
    let ep = discover_only(&cfg).await.unwrap();
    let tls = Arc::new(tls::client_config(&cfg.tls).unwrap());
    let e = dial(&ep, &cfg, &tls).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TlsError, "{e}");
    assert!(
        e.message
            .contains(&format!("TLS with {} failed", fake.ws_addr)),
        "{e}"
    );
    let cfg = config(&fake.domain, ProxyMode::Direct, Some(&ca.pem));
    connect(&cfg).await.unwrap();
    fake.stop();
}

#[tokio::test]
async fn plain_ws_is_refused_unless_the_domain_is_plain_http() {
    let ca = TestCa::new();
    let fake = FakeFeishu::start(feishu::Options {
        tls: Some(ca.server_config()),
        ws_scheme: Some("ws".into()),
        ..Default::default()
    })
    .await;
    let cfg = config(&fake.domain, ProxyMode::Direct, Some(&ca.pem));
    let e = discover_only(&cfg).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ProtocolError, "{e}");
    fake.stop();

    let fake = FakeFeishu::start(feishu::Options::default()).await;
    let cfg = config(&fake.domain, ProxyMode::Direct, None);
    assert!(connect(&cfg).await.unwrap().0.url.starts_with("ws://"));
    fake.stop();
}

#[tokio::test]
async fn a_domain_with_a_path_prefix_and_trailing_slash_is_honoured() {
    let fake = FakeFeishu::start(feishu::Options {
        prefix: "/feishu".into(),
        ..Default::default()
    })
    .await;
    let cfg = config(&format!("{}/", fake.domain), ProxyMode::Direct, None);
    connect(&cfg).await.unwrap();
    assert_eq!(fake.discovery_paths(), vec!["/feishu/callback/ws/endpoint"]);
    fake.stop();
}

#[tokio::test]
async fn the_emulator_over_tls_through_socks5_delivers_and_acks_events() {
    use feishu_transport::emulator::{
        generate_test_certificates, Emulator, EmulatorOptions, EmulatorTls, PushOptions,
    };
    let certs = generate_test_certificates(&[]).unwrap();
    let emu = Emulator::start(EmulatorOptions {
        tls: Some(EmulatorTls {
            cert_pem: certs.cert_pem.clone(),
            key_pem: certs.key_pem.clone(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(emu.domain().starts_with("https://127.0.0.1:"));
    let app = emu.apps()[0].clone();
    let proxy = TestProxy::start(Options::new(Kind::Socks5).auth("erin", PASSWORD)).await;
    let mut cfg = TransportConfig::new(
        app.app_id,
        app.app_secret,
        Domain::parse(Some(&emu.domain())).unwrap(),
    );
    cfg.proxy = fixed(&proxy.url_with(Some(("erin", PASSWORD))));
    cfg.tls.ca_pem = Some(certs.ca_pem.clone());
    let transport = Transport::new(cfg).unwrap();
    let seen = Arc::new(Seen::default());
    let run = tokio::spawn(
        transport
            .start(Arc::new(NoopHandler), Arc::new(Obs(seen.clone())))
            .unwrap(),
    );
    support::wait_for("ready", 10_000, || *seen.ready.lock().unwrap()).await;
    let id = emu.push_event(
        br#"{"schema":"2.0","header":{"event_id":"tls-1","event_type":"x"},"event":{}}"#.to_vec(),
        PushOptions::default(),
    );
    let ack = emu
        .wait_for_ack(&id, Some(200), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ack.code, 200);
    assert_eq!(proxy.tunnels().len(), 2);
    assert_eq!(emu.stats().tls_handshake_failures, 0);
    transport.close(true, None).await;
    run.await.unwrap().unwrap();
    emu.close().await;
}
