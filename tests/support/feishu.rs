//! A minimal stand-in for Feishu's two endpoints, enough to prove where connections went:
//! discovery (`POST …/callback/ws/endpoint`, answered with a socket URL) and a WebSocket
//! server that accepts and holds. Either may serve TLS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

#[derive(Clone, Default)]
pub struct Options {
    /// TLS for discovery (`https://` domain).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS for the socket (`wss://`).
    pub ws_tls: Option<Arc<rustls::ServerConfig>>,
    /// The host name put in URLs (default `127.0.0.1`).
    pub host: Option<String>,
    /// The host name of the socket URL only (default: `host`).
    pub ws_host: Option<String>,
    /// A path prefix of the domain (a private deployment), e.g. `/feishu`.
    pub prefix: String,
    /// Overrides the socket URL's scheme (default `wss` with `ws_tls`, else `ws`).
    pub ws_scheme: Option<String>,
}

#[derive(Default)]
struct State {
    discovery_paths: Vec<String>,
    sockets: usize,
}

pub struct FakeFeishu {
    /// The domain to configure, e.g. `http://127.0.0.1:1234/feishu`.
    pub domain: String,
    pub ws_addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tasks: JoinSet<()>,
}

impl FakeFeishu {
    pub async fn start(o: Options) -> FakeFeishu {
        let host = o.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let ws_host = o.ws_host.clone().unwrap_or_else(|| host.clone());
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_addr = ws.local_addr().unwrap();
        let scheme = if o.tls.is_some() { "https" } else { "http" };
        let domain = format!(
            "{scheme}://{host}:{}{}",
            http.local_addr().unwrap().port(),
            o.prefix
        );
        let ws_scheme = o
            .ws_scheme
            .clone()
            .unwrap_or_else(|| if o.ws_tls.is_some() { "wss" } else { "ws" }.to_string());
        let socket_url = format!(
            "{ws_scheme}://{ws_host}:{}/ws/v2?device_id=dev-1&service_id=7&access_key=k0123&ticket=t0123",
            ws_addr.port()
        );
        let state = Arc::new(Mutex::new(State::default()));
        let mut tasks = JoinSet::new();

        let (st, tls) = (state.clone(), o.tls.clone());
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = http.accept().await {
                let (st, tls, url) = (st.clone(), tls.clone(), socket_url.clone());
                conns.spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await {
                                answer_discovery(s, &st, &url).await;
                            }
                        }
                        None => answer_discovery(tcp, &st, &url).await,
                    }
                });
            }
        });

        let (st, tls) = (state.clone(), o.ws_tls.clone());
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = ws.accept().await {
                let (st, tls) = (st.clone(), tls.clone());
                conns.spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await {
                                hold_socket(s, &st).await;
                            }
                        }
                        None => hold_socket(tcp, &st).await,
                    }
                });
            }
        });

        FakeFeishu {
            domain,
            ws_addr,
            state,
            tasks,
        }
    }

    /// The paths discovery was asked on.
    pub fn discovery_paths(&self) -> Vec<String> {
        self.state.lock().unwrap().discovery_paths.clone()
    }

    /// WebSocket upgrades completed.
    pub fn sockets(&self) -> usize {
        self.state.lock().unwrap().sockets
    }

    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

async fn answer_discovery<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    st: &Mutex<State>,
    url: &str,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    st.lock().unwrap().discovery_paths.push(path);
    let body = serde_json::json!({
        "code": 0,
        "msg": "ok",
        "data": { "URL": url, "ClientConfig": { "PingInterval": 120 } }
    })
    .to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

async fn hold_socket<S: AsyncRead + AsyncWrite + Unpin>(s: S, st: &Mutex<State>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
        return;
    };
    st.lock().unwrap().sockets += 1;
    while let Some(Ok(_)) = ws.next().await {}
}
