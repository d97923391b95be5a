//! Small loopback proxies for tests: HTTP CONNECT (optionally over TLS) and SOCKS5, each
//! with optional username/password, each counting what passed through it, and each able
//! to misbehave on demand (refuse, answer garbage, stay silent).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP CONNECT over plain TCP.
    Http,
    /// HTTP CONNECT over TLS (an `https://` proxy); needs `tls`.
    Https,
    Socks5,
}

/// What the proxy does with a (well-authenticated) request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Opens the tunnel and relays bytes.
    Tunnel,
    /// Refuses: HTTP 403, or SOCKS5 reply 0x02 (not allowed by ruleset).
    Refuse,
    /// Answers the first thing it reads with text that is no protocol at all.
    Garbage,
    /// Reads and never answers.
    Silent,
}

#[derive(Clone)]
pub struct Options {
    pub kind: Kind,
    /// Required credentials, if any.
    pub auth: Option<(String, String)>,
    pub behaviour: Behaviour,
    /// Server TLS for `Kind::Https`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The first this-many requests get `Behaviour::Refuse` whatever `behaviour` says.
    pub refuse_first: usize,
}

impl Options {
    pub fn new(kind: Kind) -> Options {
        Options {
            kind,
            auth: None,
            behaviour: Behaviour::Tunnel,
            tls: None,
            refuse_first: 0,
        }
    }

    pub fn auth(mut self, user: &str, pass: &str) -> Options {
        self.auth = Some((user.into(), pass.into()));
        self
    }

    pub fn behaviour(mut self, b: Behaviour) -> Options {
        self.behaviour = b;
        self
    }

    pub fn tls(mut self, tls: Arc<rustls::ServerConfig>) -> Options {
        self.tls = Some(tls);
        self
    }

    pub fn refuse_first(mut self, n: usize) -> Options {
        self.refuse_first = n;
        self
    }
}

#[derive(Default)]
struct Log {
    /// Every accepted TCP connection.
    connections: usize,
    /// Each request's target as the client sent it (`host:port`), whatever happened next.
    requests: Vec<String>,
    /// Targets of tunnels actually opened.
    tunnels: Vec<String>,
}

/// A running proxy; stops when dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    kind: Kind,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProxy {
    pub async fn start(opts: Options) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let kind = opts.kind;
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let refuse = {
                    let mut l = task_log.lock().unwrap();
                    l.connections += 1;
                    l.connections <= opts.refuse_first
                };
                let opts = opts.clone();
                let log = task_log.clone();
                // Connection tasks live in the JoinSet, so aborting the accept task (on
                // drop) ends every tunnel and silent hold too.
                conns.spawn(async move {
                    let behaviour = if refuse {
                        Behaviour::Refuse
                    } else {
                        opts.behaviour
                    };
                    match (opts.kind, opts.tls.clone()) {
                        (Kind::Https, Some(tls)) => {
                            let Ok(s) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await
                            else {
                                return;
                            };
                            serve_http(s, &opts, behaviour, &log).await
                        }
                        (Kind::Https, None) => panic!("an https proxy needs tls"),
                        (Kind::Http, _) => serve_http(tcp, &opts, behaviour, &log).await,
                        (Kind::Socks5, _) => serve_socks(tcp, &opts, behaviour, &log).await,
                    }
                });
            }
        });
        TestProxy {
            addr,
            kind,
            log,
            task,
        }
    }

    /// The proxy URL, with credentials when given.
    pub fn url_with(&self, auth: Option<(&str, &str)>) -> String {
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Socks5 => "socks5",
        };
        let userinfo = auth.map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default();
        format!("{scheme}://{userinfo}{}", self.addr)
    }

    pub fn url(&self) -> String {
        self.url_with(None)
    }

    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn tunnels(&self) -> Vec<String> {
        self.log.lock().unwrap().tunnels.clone()
    }
}

async fn serve_http<S>(mut s: S, opts: &Options, behaviour: Behaviour, log: &Mutex<Log>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
        if behaviour == Behaviour::Garbage {
            let _ = s.write_all(b"garbage, not a proxy\r\n").await;
            return hold(s).await;
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    log.lock().unwrap().requests.push(target.to_string());
    if method != "CONNECT" {
        let _ = s
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    }
    if let Some((u, p)) = &opts.auth {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        );
        let ok = lines.any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("proxy-authorization") && v.trim() == want
            })
        });
        if !ok {
            let _ = s
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                .await;
            return;
        }
    }
    match behaviour {
        Behaviour::Refuse => {
            let _ = s
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
        Behaviour::Silent => hold(s).await,
        Behaviour::Garbage => unreachable!(),
        Behaviour::Tunnel => {
            let Ok(upstream) = TcpStream::connect(target).await else {
                let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            log.lock().unwrap().tunnels.push(target.to_string());
            if s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            relay(s, upstream).await;
        }
    }
}

async fn serve_socks<S>(mut s: S, opts: &Options, behaviour: Behaviour, log: &Mutex<Log>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut g = [0u8; 2];
    if s.read_exact(&mut g).await.is_err() {
        return;
    }
    if behaviour == Behaviour::Garbage {
        let _ = s.write_all(b"garbage, not a proxy\r\n").await;
        return hold(s).await;
    }
    if behaviour == Behaviour::Silent {
        return hold(s).await;
    }
    let mut methods = vec![0u8; g[1] as usize];
    if g[0] != 5 || s.read_exact(&mut methods).await.is_err() {
        return;
    }
    match &opts.auth {
        None => {
            let _ = s.write_all(&[5, 0]).await;
        }
        Some((u, p)) => {
            if !methods.contains(&2) {
                let _ = s.write_all(&[5, 0xff]).await;
                return;
            }
            let _ = s.write_all(&[5, 2]).await;
            let mut v = [0u8; 2];
            if s.read_exact(&mut v).await.is_err() {
                return;
            }
            let mut user = vec![0u8; v[1] as usize];
            let mut pl = [0u8; 1];
            if s.read_exact(&mut user).await.is_err() || s.read_exact(&mut pl).await.is_err() {
                return;
            }
            let mut pass = vec![0u8; pl[0] as usize];
            if s.read_exact(&mut pass).await.is_err() {
                return;
            }
            let ok = user == u.as_bytes() && pass == p.as_bytes();
            let _ = s.write_all(&[1, if ok { 0 } else { 1 }]).await;
            if !ok {
                return;
            }
        }
    }
    let mut head = [0u8; 4];
    if s.read_exact(&mut head).await.is_err() {
        return;
    }
    let host = match head[3] {
        1 => {
            let mut a = [0u8; 4];
            if s.read_exact(&mut a).await.is_err() {
                return;
            }
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            if s.read_exact(&mut a).await.is_err() {
                return;
            }
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        3 => {
            let mut l = [0u8; 1];
            if s.read_exact(&mut l).await.is_err() {
                return;
            }
            let mut name = vec![0u8; l[0] as usize];
            if s.read_exact(&mut name).await.is_err() {
                return;
            }
            String::from_utf8_lossy(&name).to_string()
        }
        _ => return,
    };
    let mut port = [0u8; 2];
    if s.read_exact(&mut port).await.is_err() {
        return;
    }
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    log.lock().unwrap().requests.push(target.clone());
    let reply = |rep: u8| [5, rep, 0, 1, 127, 0, 0, 1, 0, 0];
    if behaviour == Behaviour::Refuse {
        let _ = s.write_all(&reply(0x02)).await;
        return;
    }
    let Ok(upstream) = TcpStream::connect(target.as_str()).await else {
        let _ = s.write_all(&reply(0x05)).await;
        return;
    };
    log.lock().unwrap().tunnels.push(target);
    if s.write_all(&reply(0)).await.is_err() {
        return;
    }
    relay(s, upstream).await;
}

async fn relay<S>(mut client: S, mut upstream: TcpStream)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Keeps the connection open without answering, until the peer leaves or the proxy stops.
async fn hold<S: AsyncRead + Unpin>(mut s: S) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// A loopback port with nothing listening on it (bound, then released).
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}
