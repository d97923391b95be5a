//! The proxy settings of the environment: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` (lower
//! case first, as curl reads them), captured once, and `NO_PROXY`'s rules.

use std::net::IpAddr;

use super::url::ProxyUrl;
use crate::core::error::TransportError;

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
    pub(super) fn selected(&self, tls: bool) -> Result<Option<&ProxyUrl>, TransportError> {
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

    pub(super) fn for_target(
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

#[cfg(test)]
mod tests {
    use super::super::tests::url;
    use super::super::{ProxyMode, ProxyScheme};
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> EnvProxies {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvProxies::from_lookup(|k| map.get(k).cloned())
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
        assert_eq!(err.code, crate::core::error::ErrorCode::InvalidConfig);
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
}
