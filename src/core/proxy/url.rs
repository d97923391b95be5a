//! A proxy URL: `scheme://[user:password@]host[:port]` parsed into [`ProxyUrl`], its
//! credentials ([`ProxyAuth`], never shown in `Debug` or `Display`), and the words of a
//! URL that does not parse, which never quote it (it may hold a password).

use std::fmt;

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
pub(super) const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
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
        let shown = || crate::core::redact::redact_url(&with_scheme);
        let url = ::url::Url::parse(&with_scheme).map_err(|e| unparseable(&with_scheme, e))?;
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
fn unparseable(raw: &str, e: ::url::ParseError) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::tests::url;
    use super::*;

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
}
