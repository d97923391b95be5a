//! Proxies: which one a connection goes through (the `proxy` option, or the environment
//! with its `NO_PROXY` rules), and the HTTP CONNECT and SOCKS5 exchanges that open a
//! tunnel through it.
//!
//! Discovery and the WebSocket both connect through [`crate::core::net::open`], which asks
//! [`ProxyMode::for_target`] and then runs one of the exchanges here, so the two can never
//! take different paths. The exchanges are generic over the stream so they are tested on
//! in-memory pipes, byte by byte, without a network.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::TransportError;

/// The proxy protocols we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    /// HTTP CONNECT over plain TCP.
    Http,
    /// HTTP CONNECT over TLS to the proxy itself.
    Https,
    /// SOCKS5; the target's name is resolved here and sent as an address.
    Socks5,
    /// SOCKS5; the target's name is sent to the proxy, which resolves it.
    Socks5h,
}

impl ProxyScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            ProxyScheme::Http => 80,
            ProxyScheme::Https => 443,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => 1080,
        }
    }
}

/// Proxy credentials, percent-decoded from the URL's `user:password@`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    pub username: String,
    pub password: String,
}

impl ProxyAuth {
    /// The `Proxy-Authorization: Basic` credential: base64 of `user:password`.
    pub fn basic_token(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }
}

/// What a URL's userinfo percent-encodes (the WHATWG userinfo set), so a password can be
/// recognised as it was written in a proxy URL.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never reaches a log, even through a `{:?}` of the config.
        f.debug_struct("ProxyAuth")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// One proxy. Its `Display` is `scheme://host:port`, without credentials, so it can name
/// the proxy in any message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: ProxyScheme,
    /// Bare host: IPv6 addresses without brackets.
    pub host: String,
    pub port: u16,
    pub auth: Option<ProxyAuth>,
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            self.scheme.as_str(),
            host_port(&self.host, self.port)
        )
    }
}

/// `host:port`, with IPv6 hosts bracketed.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// SOCKS5 carries each credential in a one-byte length (RFC 1929).
const SOCKS_MAX_CREDENTIAL: usize = 255;

impl ProxyUrl {
    /// Parses `scheme://[user:password@]host[:port]`. A value without a scheme is taken as
    /// `http://` (as curl does with `HTTPS_PROXY=proxy.corp:3128`). The error never
    /// repeats the password.
    pub fn parse(raw: &str) -> Result<ProxyUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("is empty".into());
        }
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("http://{raw}")
        };
        let shown = || super::redact::redact_url(&with_scheme);
        let url = url::Url::parse(&with_scheme).map_err(|e| unparseable(&with_scheme, e))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            // `http://user:12/ss@proxy` parses, as host `user`, port 12 and a path holding
            // the rest of the password: refuse it, and quote none of it.
            return Err(format!(
                "({}://…, not shown: it may hold a password) has a path, query or fragment, which a proxy URL never has: a '/', '?' or '#' in the user name or password must be percent-encoded (%2F, %3F, %23; encodeURIComponent does it)",
                url.scheme()
            ));
        }
        let scheme = match url.scheme() {
            "http" => ProxyScheme::Http,
            "https" => ProxyScheme::Https,
            "socks5" => ProxyScheme::Socks5,
            "socks5h" => ProxyScheme::Socks5h,
            "socks4" | "socks4a" | "socks" => {
                return Err(format!(
                    "{:?}: SOCKS4 is not supported; use socks5:// or socks5h://",
                    shown()
                ))
            }
            other => {
                return Err(format!(
                    "{:?}: unsupported scheme {other:?} (use http://, https://, socks5:// or socks5h://)",
                    shown()
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{:?} has no host", shown()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or_else(|| scheme.default_port());
        let decode = |s: &str| -> Result<String, String> {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("{:?}: the credentials are not valid UTF-8", shown()))
        };
        let username = decode(url.username())?;
        let password = decode(url.password().unwrap_or(""))?;
        let auth = (!username.is_empty() || !password.is_empty())
            .then_some(ProxyAuth { username, password });
        if let (ProxyScheme::Socks5 | ProxyScheme::Socks5h, Some(a)) = (scheme, &auth) {
            if a.username.len() > SOCKS_MAX_CREDENTIAL || a.password.len() > SOCKS_MAX_CREDENTIAL {
                return Err(format!(
                    "{:?}: a SOCKS5 username or password is at most 255 bytes",
                    shown()
                ));
            }
        }
        Ok(ProxyUrl {
            scheme,
            host,
            port,
            auth,
        })
    }
}

/// Why `raw` did not parse, without quoting any of it: a URL that fails to parse is most
/// often one whose password holds an unencoded `/`, `#` or `?`, so its text is exactly
/// the one that carries the password. Names the scheme and the part that is wrong.
fn unparseable(raw: &str, e: url::ParseError) -> String {
    let (scheme, rest) = raw.split_once("://").unwrap_or(("", raw));
    let scheme = if !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        scheme.to_ascii_lowercase()
    } else {
        "?".to_string()
    };
    // The parser ends the authority at the first `/`, `?` or `#`; an `@` after one of
    // them means user name or password holds it unencoded.
    let userinfo = rest.rfind('@').map(|at| &rest[..at]);
    let why = match userinfo {
        Some(u) if u.contains(['/', '?', '#']) => "the user name or password holds a '/', '?' or '#' that is not percent-encoded (write %2F, %3F, %23; encodeURIComponent does it)".to_string(),
        Some(_) => format!("{e} in the host or port after '@'"),
        None => format!("{e} in the host or port"),
    };
    format!("({scheme}://…, not shown: it may hold a password) does not parse as a URL: {why}")
}

/// How connections choose their proxy.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyMode {
    /// `proxy: undefined`: the environment's `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and
    /// `NO_PROXY`, as they were when the transport was configured. Boxed: it is much
    /// larger than the other variants and read once per connect.
    Environment(Box<EnvProxies>),
    /// `proxy: null`: always direct, whatever the environment says.
    Direct,
    /// `proxy: '<url>'`: every connection through this proxy; `NO_PROXY` is not consulted
    /// (the caller named the proxy explicitly).
    Fixed(ProxyUrl),
}

impl ProxyMode {
    /// The environment mode, reading the process environment now.
    pub fn from_env() -> ProxyMode {
        ProxyMode::environment(EnvProxies::capture())
    }

    pub fn environment(env: EnvProxies) -> ProxyMode {
        ProxyMode::Environment(Box::new(env))
    }

    /// The proxy for a connection to `host:port` (`tls`: an `https`/`wss` target), or
    /// `None` for a direct connection. Errs only for an environment variable that is set,
    /// applies to this target, and is not a usable proxy URL.
    pub fn for_target(
        &self,
        tls: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<&ProxyUrl>, TransportError> {
        match self {
            ProxyMode::Direct => Ok(None),
            ProxyMode::Fixed(p) => Ok(Some(p)),
            ProxyMode::Environment(env) => env.for_target(tls, host, port),
        }
    }

    /// Fails early for an environment proxy that is set but unusable, for targets of the
    /// domain's kind (`tls`: an `https` domain).
    pub fn validate(&self, tls: bool) -> Result<(), TransportError> {
        match self {
            ProxyMode::Environment(env) => env.selected(tls).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Proxy passwords, to hide wherever they might appear.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |p: &ProxyUrl| {
            if let Some(a) = &p.auth {
                out.push(a.password.clone());
                // As written in a URL, and the `Basic` credential a proxy may echo back
                // (`407 credentials YWxpY2U6… rejected`), with and without its padding.
                let encoded: String =
                    percent_encoding::utf8_percent_encode(&a.password, USERINFO).to_string();
                if encoded != a.password {
                    out.push(encoded);
                }
                let basic = a.basic_token();
                out.push(basic.trim_end_matches('=').to_string());
                out.push(basic);
            }
        };
        match self {
            ProxyMode::Direct => {}
            ProxyMode::Fixed(p) => add(p),
            ProxyMode::Environment(env) => {
                for v in [&env.http, &env.https, &env.all].into_iter().flatten() {
                    if let Ok(p) = &v.proxy {
                        add(p);
                    }
                }
            }
        }
        out
    }
}

/// One proxy variable as found in the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvValue {
    /// The variable's name as set (`https_proxy` or `HTTPS_PROXY` …).
    pub var: &'static str,
    pub proxy: Result<ProxyUrl, String>,
}

/// The proxy settings of the environment, captured once.
///
/// They are read when the transport is configured (the constructor, on the JavaScript
/// thread), not at each connect: Node's `process.env.X = …` calls `setenv` on that thread,
/// and reading the environment from a network thread at the same time is a data race in
/// libc. Capturing also makes a run's behaviour fixed and testable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnvProxies {
    pub http: Option<EnvValue>,
    pub https: Option<EnvValue>,
    pub all: Option<EnvValue>,
    pub no_proxy: NoProxy,
}

impl EnvProxies {
    /// Reads the process environment.
    pub fn capture() -> EnvProxies {
        EnvProxies::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get`. Each name is looked up lower case first, then
    /// upper case (curl's and the npm `proxy-from-env` order, so the Lark SDK's axios
    /// would pick the same); an empty value counts as unset. Upper-case `HTTP_PROXY` is
    /// ignored when `REQUEST_METHOD` is set: in a CGI process a client's `Proxy:` header
    /// arrives as that variable ("httpoxy").
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> EnvProxies {
        let cgi = get("REQUEST_METHOD").is_some();
        let find = |names: &[&'static str]| -> Option<EnvValue> {
            names.iter().find_map(|&var| {
                let v = get(var)?;
                let v = v.trim();
                (!v.is_empty()).then(|| EnvValue {
                    var,
                    proxy: ProxyUrl::parse(v),
                })
            })
        };
        let http_names: &[&'static str] = if cgi {
            &["http_proxy"]
        } else {
            &["http_proxy", "HTTP_PROXY"]
        };
        EnvProxies {
            http: find(http_names),
            https: find(&["https_proxy", "HTTPS_PROXY"]),
            all: find(&["all_proxy", "ALL_PROXY"]),
            no_proxy: ["no_proxy", "NO_PROXY"]
                .iter()
                .find_map(|n| get(n).filter(|v| !v.trim().is_empty()))
                .map(|v| NoProxy::parse(&v))
                .unwrap_or_default(),
        }
    }

    /// The variable that applies to targets of this kind: `HTTPS_PROXY` for `https`/`wss`,
    /// `HTTP_PROXY` for `http`/`ws`, else `ALL_PROXY`.
    fn selected(&self, tls: bool) -> Result<Option<&ProxyUrl>, TransportError> {
        let specific = if tls { &self.https } else { &self.http };
        match specific.as_ref().or(self.all.as_ref()) {
            None => Ok(None),
            Some(EnvValue { proxy: Ok(p), .. }) => Ok(Some(p)),
            Some(EnvValue {
                var,
                proxy: Err(why),
            }) => Err(TransportError::invalid_config(format!(
                "the environment variable {var} is not a usable proxy URL: {why} (fix it, or pass proxy: null to connect directly)"
            ))),
        }
    }

    fn for_target(
        &self,
        tls: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<&ProxyUrl>, TransportError> {
        if self.no_proxy.matches(host, port) {
            return Ok(None);
        }
        self.selected(tls)
    }
}

/// `NO_PROXY`: comma- or space-separated entries, each one of
/// - `*`: every host;
/// - a domain (`example.com`, `.example.com` or `*.example.com`): that name and every
///   name under it, case-insensitively (`notexample.com` does not match);
/// - an IP address (`10.1.2.3`, `::1`, `[::1]`) or a CIDR block (`10.0.0.0/8`, `fd00::/8`);
/// - any of those with `:port`, which then matches that port only.
///
/// Malformed entries are skipped, as curl does. Loopback is not bypassed unless listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NoProxy {
    all: bool,
    rules: Vec<NoProxyRule>,
}

#[derive(Debug, Clone, PartialEq)]
enum NoProxyRule {
    Domain { name: String, port: Option<u16> },
    Ip { addr: IpAddr, port: Option<u16> },
    Cidr { net: IpAddr, prefix: u8 },
}

impl NoProxy {
    pub fn parse(s: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in s.split(|c: char| c == ',' || c.is_whitespace()) {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                out.all = true;
                continue;
            }
            if let Some(rule) = NoProxyRule::parse(&entry) {
                out.rules.push(rule);
            }
        }
        out
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.rules.iter().any(|r| match r {
            NoProxyRule::Domain { name, port: p } => {
                p.is_none_or(|p| p == port)
                    && (host == *name
                        || (host.len() > name.len()
                            && host.ends_with(name.as_str())
                            && host.as_bytes()[host.len() - name.len() - 1] == b'.'))
            }
            NoProxyRule::Ip { addr, port: p } => {
                p.is_none_or(|p| p == port) && ip.is_some_and(|ip| ip == *addr)
            }
            NoProxyRule::Cidr { net, prefix } => ip.is_some_and(|ip| in_cidr(ip, *net, *prefix)),
        })
    }
}

impl NoProxyRule {
    fn parse(entry: &str) -> Option<NoProxyRule> {
        if let Some((net, prefix)) = entry.split_once('/') {
            let net: IpAddr = net
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            return (prefix <= max).then_some(NoProxyRule::Cidr { net, prefix });
        }
        // `[v6]:port`, `[v6]`, bare `v6` (several colons, no port), or `name[:port]`.
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (h, port)
        } else if entry.matches(':').count() > 1 {
            (entry, None)
        } else if let Some((h, p)) = entry.split_once(':') {
            (h, Some(p.parse().ok()?))
        } else {
            (entry, None)
        };
        if let Ok(addr) = host.parse::<IpAddr>() {
            return Some(NoProxyRule::Ip { addr, port });
        }
        let name = host
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.');
        (!name.is_empty() && !name.contains('*')).then(|| NoProxyRule::Domain {
            name: name.to_string(),
            port,
        })
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Where a tunnel should lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelTarget {
    /// Sent as an address (SOCKS5 with local resolution, or an IP literal).
    Addr(SocketAddr),
    /// Sent as a name, for the proxy to resolve.
    Name(String, u16),
}

impl fmt::Display for TunnelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelTarget::Addr(a) => write!(f, "{}", host_port(&a.ip().to_string(), a.port())),
            TunnelTarget::Name(h, p) => f.write_str(&host_port(h, *p)),
        }
    }
}

/// What went wrong inside a proxy exchange, in words that follow "the proxy X …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFailure(pub String);

impl From<std::io::Error> for ProxyFailure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProxyFailure("closed the connection in the middle of its answer".into())
        } else {
            ProxyFailure(format!("failed mid-exchange: {e}"))
        }
    }
}

/// The longest CONNECT answer head we accept; real ones are a few hundred bytes.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// Opens an HTTP CONNECT tunnel to `target` over `stream` (already connected to the
/// proxy). Credentials go as `Proxy-Authorization: Basic` at once, as curl does.
///
/// The answer is read a byte at a time so nothing after its blank line is consumed: those
/// bytes belong to the tunnel. This runs once per connect, so the cost does not matter.
pub async fn http_connect<S>(
    stream: &mut S,
    proxy: &ProxyUrl,
    target: &TunnelTarget,
) -> Result<(), ProxyFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let authority = target.to_string();
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = &proxy.auth {
        let token = a.basic_token();
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    stream.flush().await?;

    let mut head: Vec<u8> = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_HEAD {
            return Err(ProxyFailure(format!(
                "answered with more than {} KiB of headers",
                MAX_CONNECT_HEAD / 1024
            )));
        }
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Err(ProxyFailure(if head.is_empty() {
                "closed the connection without answering the CONNECT request".into()
            } else if looks_like_http(&head) {
                format!(
                    "closed the connection in the middle of its answer: {}",
                    snippet(&head)
                )
            } else {
                not_http(&head)
            }));
        }
        head.push(byte[0]);
        if !looks_like_http(&head) {
            // Not HTTP: say what it sent, including whatever else already arrived, rather
            // than waiting for a blank line that may never come.
            read_available(stream, &mut head, 64).await;
            return Err(ProxyFailure(not_http(&head)));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => {
            return Err(ProxyFailure(format!(
                "answered a malformed HTTP response: {}",
                snippet(&head)
            )))
        }
    }
    let code = resp.code.unwrap_or(0);
    let reason = resp.reason.unwrap_or("").trim();
    let status = format!(
        "HTTP {code}{}{reason}",
        if reason.is_empty() { "" } else { " " }
    );
    match code {
        200..=299 => Ok(()),
        407 if proxy.auth.is_some() => Err(ProxyFailure(format!(
            "rejected the credentials given in the proxy URL ({status})"
        ))),
        407 => Err(ProxyFailure(format!(
            "requires authentication ({status}); give it as http://user:password@host:port"
        ))),
        _ => Err(ProxyFailure(format!(
            "refused to open a tunnel to {authority}: it answered {status}"
        ))),
    }
}

/// Whether `head` can still be the start of an HTTP response.
fn looks_like_http(head: &[u8]) -> bool {
    const PREFIX: &[u8] = b"HTTP/";
    let n = head.len().min(PREFIX.len());
    head[..n].eq_ignore_ascii_case(&PREFIX[..n])
}

fn not_http(head: &[u8]) -> String {
    let hint = match head.first() {
        Some(0x05) => " (a SOCKS5 answer: use socks5:// or socks5h://)",
        Some(0x16) => " (a TLS handshake: use https:// for a TLS proxy)",
        _ => "",
    };
    format!(
        "answered something that is not HTTP: {}{hint}",
        snippet(head)
    )
}

/// Reads, without waiting, whatever has already arrived (at most `max` more bytes): used
/// only to quote a garbage answer more fully.
async fn read_available<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, max: usize) {
    use futures_util::FutureExt as _;
    let mut byte = [0u8; 1];
    for _ in 0..max {
        match stream.read(&mut byte).now_or_never() {
            Some(Ok(1)) => buf.push(byte[0]),
            _ => break,
        }
    }
}

/// A short, printable, single-line quotation of bytes from the network.
fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let mut out = String::from("\"");
    for &b in bytes.iter().take(MAX) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    if bytes.len() > MAX {
        out.push('…');
    }
    out
}

mod socks {
    pub const VERSION: u8 = 0x05;
    pub const NO_AUTH: u8 = 0x00;
    pub const USER_PASS: u8 = 0x02;
    pub const NO_ACCEPTABLE: u8 = 0xff;
    pub const CONNECT: u8 = 0x01;
    pub const ATYP_V4: u8 = 0x01;
    pub const ATYP_NAME: u8 = 0x03;
    pub const ATYP_V6: u8 = 0x04;

    /// RFC 1928 §6 reply codes.
    pub fn reply_text(rep: u8) -> &'static str {
        match rep {
            0x01 => "general SOCKS server failure",
            0x02 => "connection not allowed by ruleset",
            0x03 => "network unreachable",
            0x04 => "host unreachable",
            0x05 => "connection refused",
            0x06 => "TTL expired",
            0x07 => "command not supported",
            0x08 => "address type not supported",
            _ => "unassigned reply code",
        }
    }
}

/// Opens a SOCKS5 tunnel (RFC 1928) to `target` over `stream`, authenticating with
/// username/password (RFC 1929) when the URL carries credentials.
pub async fn socks5_connect<S>(
    stream: &mut S,
    proxy: &ProxyUrl,
    target: &TunnelTarget,
) -> Result<(), ProxyFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Greeting: offer no-auth, and username/password when we have credentials.
    let greeting: &[u8] = if proxy.auth.is_some() {
        &[socks::VERSION, 2, socks::NO_AUTH, socks::USER_PASS]
    } else {
        &[socks::VERSION, 1, socks::NO_AUTH]
    };
    stream.write_all(greeting).await?;
    stream.flush().await?;
    let mut choice = [0u8; 2];
    read_first(stream, &mut choice, "the SOCKS5 greeting").await?;
    if choice[0] != socks::VERSION {
        let mut got = choice.to_vec();
        read_available(stream, &mut got, 62).await;
        let hint = if choice[0] == b'H' {
            " (it answered HTTP: an HTTP proxy? use http://)"
        } else {
            ""
        };
        return Err(ProxyFailure(format!(
            "answered something that is not SOCKS5: {}{hint}",
            snippet(&got)
        )));
    }
    match (choice[1], &proxy.auth) {
        (socks::NO_AUTH, _) => {}
        (socks::USER_PASS, Some(a)) => {
            let mut msg = vec![0x01, a.username.len() as u8];
            msg.extend_from_slice(a.username.as_bytes());
            msg.push(a.password.len() as u8);
            msg.extend_from_slice(a.password.as_bytes());
            stream.write_all(&msg).await?;
            stream.flush().await?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await?;
            if status[1] != 0x00 {
                return Err(ProxyFailure(
                    "rejected the username and password given in the proxy URL".into(),
                ));
            }
        }
        (socks::NO_ACCEPTABLE, None) => {
            return Err(ProxyFailure(
                "requires authentication; give it as socks5://user:password@host:port".into(),
            ))
        }
        (socks::NO_ACCEPTABLE, Some(_)) => {
            return Err(ProxyFailure(
                "accepted none of the offered authentication methods (none, username/password)"
                    .into(),
            ))
        }
        (other, _) => {
            return Err(ProxyFailure(format!(
                "chose an authentication method that was not offered (0x{other:02x})"
            )))
        }
    }

    let mut req = vec![socks::VERSION, socks::CONNECT, 0x00];
    let port = match target {
        TunnelTarget::Addr(addr) => {
            match addr.ip() {
                IpAddr::V4(v4) => {
                    req.push(socks::ATYP_V4);
                    req.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    req.push(socks::ATYP_V6);
                    req.extend_from_slice(&v6.octets());
                }
            }
            addr.port()
        }
        TunnelTarget::Name(name, port) => {
            if name.len() > 255 {
                return Err(ProxyFailure(
                    "cannot be asked for a host name longer than 255 bytes".into(),
                ));
            }
            req.push(socks::ATYP_NAME);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
            *port
        }
    };
    req.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&req).await?;
    stream.flush().await?;

    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != socks::VERSION {
        return Err(ProxyFailure(format!(
            "answered the CONNECT request with something that is not SOCKS5: {}",
            snippet(&head)
        )));
    }
    if head[1] != 0x00 {
        return Err(ProxyFailure(format!(
            "could not connect to {target}: {} (SOCKS5 reply 0x{:02x})",
            socks::reply_text(head[1]),
            head[1]
        )));
    }
    // The bound address, which we do not need but must consume: the tunnel starts after it.
    let rest = match head[3] {
        socks::ATYP_V4 => 4 + 2,
        socks::ATYP_V6 => 16 + 2,
        socks::ATYP_NAME => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            len[0] as usize + 2
        }
        other => {
            return Err(ProxyFailure(format!(
                "answered with an unknown address type 0x{other:02x}"
            )))
        }
    };
    let mut skip = vec![0u8; rest];
    stream.read_exact(&mut skip).await?;
    Ok(())
}

/// `read_exact` for a proxy's first answer, where an immediate close deserves its own
/// words.
async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    what: &str,
) -> Result<(), ProxyFailure> {
    let mut got = 0;
    while got < buf.len() {
        let n = stream.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(ProxyFailure(if got == 0 {
                format!("closed the connection without answering {what}")
            } else {
                format!(
                    "closed the connection in the middle of {what}: {}",
                    snippet(&buf[..got])
                )
            }));
        }
        got += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::duplex;

    fn env(vars: &[(&str, &str)]) -> EnvProxies {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvProxies::from_lookup(|k| map.get(k).cloned())
    }

    fn url(s: &str) -> ProxyUrl {
        ProxyUrl::parse(s).unwrap()
    }

    #[test]
    fn parses_proxy_urls() {
        let p = url("http://proxy.corp:3128");
        assert_eq!(
            (p.scheme, p.host.as_str(), p.port),
            (ProxyScheme::Http, "proxy.corp", 3128)
        );
        assert!(p.auth.is_none());
        assert_eq!(url("https://p").port, 443);
        assert_eq!(url("http://p/").port, 80);
        assert_eq!(url("socks5://p").port, 1080);
        assert_eq!(url("socks5h://p:9050").scheme, ProxyScheme::Socks5h);
        assert_eq!(url("proxy.corp:3128").scheme, ProxyScheme::Http);
        assert_eq!(url("HTTP://P:1").host, "p");
        let v6 = url("http://[::1]:8080");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "http://[::1]:8080");

        let a = url("socks5://al%40ice:p%3Ass%20w@127.0.0.1:1080");
        let auth = a.auth.clone().unwrap();
        assert_eq!(auth.username, "al@ice");
        assert_eq!(auth.password, "p:ss w");
        // neither Display nor Debug shows the password
        assert_eq!(a.to_string(), "socks5://127.0.0.1:1080");
        assert!(!format!("{a:?}").contains("p:ss"));
        assert!(url("http://user@p").auth.is_some());
    }

    #[test]
    fn rejects_unusable_proxy_urls_without_echoing_the_password() {
        for (bad, want) in [
            ("", "empty"),
            ("socks4://p:1080", "SOCKS4"),
            ("ftp://u:hunter22@p", "unsupported scheme"),
            ("http://u:hunter22@", "URL"),
            ("http://[::1", "URL"),
            ("http://user:pa/ss-hunter22@proxy:3128", "'/', '?' or '#'"),
            ("http://user:pa#hunter22@proxy:3128", "not percent-encoded"),
            (
                "http://user:hunter22@proxy:99999",
                "invalid port number in the host or port",
            ),
            (
                "http://user:12/hunter22@proxy:3128",
                "path, query or fragment",
            ),
            (
                "http://user:12?hunter22@proxy:3128",
                "must be percent-encoded",
            ),
        ] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(!e.contains("hunter22"), "{bad}: {e}");
        }
        let long = "x".repeat(256);
        assert!(ProxyUrl::parse(&format!("socks5://{long}:pw@p")).is_err());
        assert!(ProxyUrl::parse(&format!("http://{long}:pw@p")).is_ok());
    }

    #[test]
    fn environment_precedence() {
        let e = env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
            ("HTTP_PROXY", "http://plain:1"),
            ("ALL_PROXY", "socks5://all:1"),
        ]);
        let pick = |tls: bool| {
            e.for_target(tls, "open.feishu.cn", 443)
                .unwrap()
                .map(|p| p.host.clone())
        };
        // lower case first; https targets use HTTPS_PROXY, http targets HTTP_PROXY
        assert_eq!(pick(true).as_deref(), Some("lower"));
        assert_eq!(pick(false).as_deref(), Some("plain"));
        // ALL_PROXY when the specific one is unset or empty
        let e = env(&[("https_proxy", " "), ("all_proxy", "socks5h://all:1")]);
        let p = e.for_target(true, "h", 443).unwrap().unwrap();
        assert_eq!((p.scheme, p.host.as_str()), (ProxyScheme::Socks5h, "all"));
        assert_eq!(
            e.for_target(false, "h", 80).unwrap().unwrap().host,
            "all",
            "ALL_PROXY covers http targets too"
        );
        // an https target never falls back to HTTP_PROXY
        let e = env(&[("HTTP_PROXY", "http://plain:1")]);
        assert!(e.for_target(true, "h", 443).unwrap().is_none());
        // httpoxy: upper-case HTTP_PROXY is ignored in a CGI process
        let e = env(&[("HTTP_PROXY", "http://evil:1"), ("REQUEST_METHOD", "GET")]);
        assert!(e.for_target(false, "h", 80).unwrap().is_none());
        assert!(env(&[]).for_target(true, "h", 443).unwrap().is_none());
    }

    #[test]
    fn an_unusable_environment_proxy_is_reported_by_name_only_where_it_applies() {
        let e = env(&[("ALL_PROXY", "socks4://u:hunter22@p")]);
        let err = e.for_target(true, "h", 443).unwrap_err();
        assert_eq!(err.code, super::super::error::ErrorCode::InvalidConfig);
        assert!(err.message.contains("ALL_PROXY"), "{}", err.message);
        assert!(!err.message.contains("hunter22"));
        let mode = ProxyMode::environment(env(&[("http_proxy", "ftp://p")]));
        assert!(
            mode.validate(true).is_ok(),
            "http_proxy does not apply to https"
        );
        assert!(mode.validate(false).is_err());
        assert!(ProxyMode::Direct.validate(false).is_ok());
    }

    #[test]
    fn direct_and_fixed_modes_ignore_the_environment() {
        assert!(ProxyMode::Direct
            .for_target(true, "h", 443)
            .unwrap()
            .is_none());
        let fixed = ProxyMode::Fixed(url("http://p:1"));
        // NO_PROXY is an environment rule: an explicit proxy takes everything
        assert_eq!(
            fixed
                .for_target(false, "localhost", 80)
                .unwrap()
                .unwrap()
                .host,
            "p"
        );
        let with_auth = ProxyMode::Fixed(url("http://u:pw-123@p:1"));
        // the password, as written in a URL, and the Basic credential with and without
        // its padding: base64("u:pw-123") = "dTpwdy0xMjM="
        assert_eq!(
            with_auth.secrets(),
            vec!["pw-123", "dTpwdy0xMjM", "dTpwdy0xMjM="]
        );
        let envd = ProxyMode::environment(env(&[
            ("HTTPS_PROXY", "http://u:a-secret@p:1"),
            ("ALL_PROXY", "socks5://u:b-secret@p:1"),
        ]));
        let s = envd.secrets();
        assert!(s.contains(&"a-secret".to_string()) && s.contains(&"b-secret".to_string()));
        // base64("u:a-secret"), and "p@ss" as a URL writes it
        assert!(s.contains(&"dTphLXNlY3JldA==".to_string()), "{s:?}");
        let at = ProxyMode::Fixed(ProxyUrl::parse("http://u:p%40ss@p:1").unwrap());
        assert!(at.secrets().contains(&"p%40ss".to_string()));
    }

    #[test]
    fn no_proxy_rules() {
        let np = NoProxy::parse(
            " Example.com, .corp.internal *.svc,localhost:8080 ,10.0.0.0/8, 192.168.1.5,[::1]:443, fd00::/8 , bad:port:x, :99",
        );
        let m = |h: &str, p: u16| np.matches(h, p);
        assert!(m("example.com", 443));
        assert!(m("api.EXAMPLE.com.", 443), "case and trailing dot");
        assert!(!m("notexample.com", 443), "suffix only at a label boundary");
        assert!(
            m("corp.internal", 443),
            "a leading dot also matches the name itself"
        );
        assert!(m("a.b.corp.internal", 443));
        assert!(m("x.svc", 80));
        assert!(m("localhost", 8080));
        assert!(!m("localhost", 8081), "the port must match when given");
        assert!(m("10.20.30.40", 443));
        assert!(!m("11.0.0.1", 443));
        assert!(m("192.168.1.5", 1));
        assert!(!m("192.168.1.50", 1));
        assert!(m("[::1]", 443));
        assert!(m("::1", 443));
        assert!(!m("::1", 80));
        assert!(m("fd12::1", 80));
        assert!(!m("fe80::1", 80));
        assert!(
            !m("127.0.0.1", 80),
            "loopback is not bypassed unless listed"
        );
        assert!(NoProxy::parse("*").matches("anything", 1));
        assert!(!NoProxy::parse("").matches("anything", 1));
        assert!(NoProxy::parse("127.0.0.1").matches("127.0.0.1", 5555));

        let e = env(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", "feishu.cn"),
            ("NO_PROXY", "other"),
        ]);
        assert!(e.for_target(true, "open.feishu.cn", 443).unwrap().is_none());
        assert!(e.for_target(true, "other", 443).unwrap().is_some());
    }

    async fn read_head(s: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap() == 0 {
                break;
            }
            head.push(b[0]);
        }
        head
    }

    fn target() -> &'static TunnelTarget {
        static T: std::sync::LazyLock<TunnelTarget> =
            std::sync::LazyLock::new(|| TunnelTarget::Name("open.feishu.cn".into(), 443));
        &T
    }

    async fn connect_answering(
        proxy: &str,
        answer: &'static [u8],
    ) -> (Result<(), ProxyFailure>, String) {
        let p = url(proxy);
        let t = target();
        let (mut a, mut b) = duplex(4096);
        let server = async move {
            let head = read_head(&mut b).await;
            b.write_all(answer).await.unwrap();
            head
        };
        let (r, seen) = tokio::join!(http_connect(&mut a, &p, t), server);
        (r, String::from_utf8(seen).unwrap())
    }

    #[tokio::test]
    async fn http_connect_success_and_auth_header() {
        let (r, req) = connect_answering(
            "http://al%40ice:s3cret@p:1",
            b"HTTP/1.1 200 Connection established\r\nX: y\r\n\r\n",
        )
        .await;
        assert_eq!(r, Ok(()));
        assert!(
            req.starts_with("CONNECT open.feishu.cn:443 HTTP/1.1\r\nHost: open.feishu.cn:443\r\n")
        );
        // base64("al@ice:s3cret")
        assert!(
            req.contains("Proxy-Authorization: Basic YWxAaWNlOnMzY3JldA==\r\n"),
            "{req}"
        );
        let (r, req) = connect_answering("http://p:1", b"HTTP/1.0 200 OK\r\n\r\n").await;
        assert_eq!(r, Ok(()));
        assert!(!req.contains("Proxy-Authorization"));
    }

    #[tokio::test]
    async fn http_connect_does_not_consume_tunnel_bytes() {
        let p = url("http://p:1");
        let (mut a, mut b) = duplex(4096);
        let server = async move {
            read_head(&mut b).await;
            b.write_all(b"HTTP/1.1 200 OK\r\n\r\nTUNNEL").await.unwrap();
            b
        };
        let (r, _b) = tokio::join!(http_connect(&mut a, &p, target()), server);
        r.unwrap();
        let mut rest = [0u8; 6];
        a.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"TUNNEL");
    }

    #[tokio::test]
    async fn http_connect_failures_say_what_the_proxy_said() {
        for (proxy, answer, want) in [
            (
                "http://p:1",
                &b"HTTP/1.1 403 Forbidden\r\n\r\n"[..],
                "refused to open a tunnel to open.feishu.cn:443: it answered HTTP 403 Forbidden",
            ),
            (
                "http://p:1",
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
                "requires authentication (HTTP 407 Proxy Authentication Required)",
            ),
            (
                "http://u:wrong@p:1",
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                "rejected the credentials",
            ),
            (
                "http://p:1",
                b"hello garbage\r\n",
                "answered something that is not HTTP: \"hello garbage\\r\\n\"",
            ),
            ("http://p:1", b"\x05\xff", "use socks5://"),
            (
                "http://p:1",
                b"HTTP/1.1 200 OK\r\n",
                "in the middle of its answer",
            ),
            ("http://p:1", b"", "without answering"),
            ("http://p:1", b"HTTP/1.1 xyz\r\n\r\n", "malformed"),
        ] {
            let (r, _) = connect_answering(proxy, answer).await;
            let e = r.unwrap_err().0;
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[tokio::test]
    async fn http_connect_bounds_the_answer() {
        let p = url("http://p:1");
        let t = target();
        let (mut a, mut b) = duplex(4096);
        let server = async move {
            read_head(&mut b).await;
            let _ = b.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line =
                b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            // a little over the 16 KiB limit, and within what the pipe buffers once the
            // client stops reading
            for _ in 0..250 {
                if b.write_all(line).await.is_err() {
                    break;
                }
            }
        };
        let (r, ()) = tokio::join!(http_connect(&mut a, &p, t), server);
        assert!(r.unwrap_err().0.contains("KiB of headers"));
    }

    /// A scripted SOCKS5 server: checks the greeting, optionally the credentials, then
    /// answers the request with `rep`. Returns the CONNECT request it read.
    async fn socks_server(
        mut s: tokio::io::DuplexStream,
        method: u8,
        creds_ok: bool,
        rep: u8,
    ) -> Vec<u8> {
        let mut g = [0u8; 2];
        s.read_exact(&mut g).await.unwrap();
        let mut methods = vec![0u8; g[1] as usize];
        s.read_exact(&mut methods).await.unwrap();
        s.write_all(&[5, method]).await.unwrap();
        if method == 0xff {
            return methods;
        }
        if method == 2 {
            let mut v = [0u8; 2];
            s.read_exact(&mut v).await.unwrap();
            let mut user = vec![0u8; v[1] as usize];
            s.read_exact(&mut user).await.unwrap();
            let mut pl = [0u8; 1];
            s.read_exact(&mut pl).await.unwrap();
            let mut pass = vec![0u8; pl[0] as usize];
            s.read_exact(&mut pass).await.unwrap();
            s.write_all(&[1, if creds_ok { 0 } else { 1 }])
                .await
                .unwrap();
            if !creds_ok {
                return [user, b":".to_vec(), pass].concat();
            }
        }
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.unwrap();
        let mut req = head.to_vec();
        let len = match head[3] {
            1 => 4,
            4 => 16,
            _ => {
                let mut l = [0u8; 1];
                s.read_exact(&mut l).await.unwrap();
                req.push(l[0]);
                l[0] as usize
            }
        };
        let mut rest = vec![0u8; len + 2];
        s.read_exact(&mut rest).await.unwrap();
        req.extend_from_slice(&rest);
        // bound address as a name, to prove it is consumed whatever its type
        s.write_all(&[5, rep, 0, 3, 4, b'h', b'o', b's', b't', 0, 80, b'X'])
            .await
            .unwrap();
        req
    }

    #[tokio::test]
    async fn socks5_no_auth_by_name_and_by_address() {
        let p = url("socks5h://p:1");
        let (mut a, b) = duplex(4096);
        let (r, req) = tokio::join!(
            socks5_connect(&mut a, &p, target()),
            socks_server(b, 0, true, 0)
        );
        r.unwrap();
        let mut want = vec![5, 1, 0, 3, 14];
        want.extend_from_slice(b"open.feishu.cn");
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(req, want);
        // the bound address was consumed: the next byte is the tunnel's
        let mut x = [0u8; 1];
        a.read_exact(&mut x).await.unwrap();
        assert_eq!(&x, b"X");

        let (mut a, b) = duplex(4096);
        let t = TunnelTarget::Addr("[::1]:8443".parse().unwrap());
        let (r, req) = tokio::join!(socks5_connect(&mut a, &p, &t), socks_server(b, 0, true, 0));
        r.unwrap();
        assert_eq!(req[3], 4);
        assert_eq!(req.len(), 4 + 16 + 2);
    }

    #[tokio::test]
    async fn socks5_with_credentials() {
        let p = url("socks5://alice:s3cret@p:1");
        let (mut a, b) = duplex(4096);
        let (r, _) = tokio::join!(
            socks5_connect(&mut a, &p, target()),
            socks_server(b, 2, true, 0)
        );
        r.unwrap();

        let (mut a, b) = duplex(4096);
        let (r, seen) = tokio::join!(
            socks5_connect(&mut a, &p, target()),
            socks_server(b, 2, false, 0)
        );
        assert_eq!(seen, b"alice:s3cret");
        assert!(r
            .unwrap_err()
            .0
            .contains("rejected the username and password"));
    }

    #[tokio::test]
    async fn socks5_failures_say_what_the_proxy_said() {
        let plain = url("socks5://p:1");
        let t = target();
        let (mut a, b) = duplex(4096);
        let (r, offered) = tokio::join!(
            socks5_connect(&mut a, &plain, t),
            socks_server(b, 0xff, true, 0)
        );
        assert_eq!(offered, vec![0], "only no-auth offered without credentials");
        assert!(r.unwrap_err().0.contains("requires authentication"));

        let (mut a, b) = duplex(4096);
        let (r, _) = tokio::join!(
            socks5_connect(&mut a, &plain, t),
            socks_server(b, 0, true, 5)
        );
        let e = r.unwrap_err().0;
        assert!(
            e.contains(
                "could not connect to open.feishu.cn:443: connection refused (SOCKS5 reply 0x05)"
            ),
            "{e}"
        );

        // an HTTP proxy answering a SOCKS greeting (the "protocol mismatch" wall)
        let (mut a, mut b) = duplex(4096);
        let server = async move {
            let mut g = [0u8; 3];
            b.read_exact(&mut g).await.unwrap();
            b.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await
                .unwrap();
        };
        let (r, ()) = tokio::join!(socks5_connect(&mut a, &plain, t), server);
        assert!(r.unwrap_err().0.contains("use http://"));

        let (mut a, mut b) = duplex(4096);
        let server = async move {
            let mut g = [0u8; 3];
            b.read_exact(&mut g).await.unwrap();
        };
        let (r, ()) = tokio::join!(socks5_connect(&mut a, &plain, t), server);
        assert!(r
            .unwrap_err()
            .0
            .contains("without answering the SOCKS5 greeting"));
    }
}
