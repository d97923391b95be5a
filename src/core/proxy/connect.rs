//! HTTP CONNECT (RFC 9110 §9.3.6): opening a tunnel through an `http://` or `https://`
//! proxy, and saying in words what the proxy answered when it does not open one.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{read_available, snippet, ProxyFailure, ProxyUrl, TunnelTarget};

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

#[cfg(test)]
mod tests {
    use super::super::tests::{target, url};
    use super::*;
    use tokio::io::duplex;

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
}
