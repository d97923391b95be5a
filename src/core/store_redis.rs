//! The Redis (or Valkey) dedupe store (`dedupe.store: 'redis://…'` / `'rediss://…'`),
//! shared by every process and host of a bot.
//!
//! One multiplexed connection (the redis crate's `ConnectionManager`, on tokio), which
//! reconnects by itself; `rediss://` is TLS through rustls, trusting exactly what the
//! transport's own sockets trust (`tls.caPem`, `tls.systemRoots`; see [`RedisStore::open`]),
//! certificates always verified. A claim is one round trip (a
//! Lua script: read the key, or set it with the lease if it is free, atomically, so two
//! processes never both own an event); a result is one `SET … PX ttl`; a failure's
//! release is one script that deletes the key only while it still holds our claim, and a
//! renewal of a running handler's claim one that extends its expiry only while it does.
//! Key expiry does the sweeping.

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::error::TransportError;
use super::store::{claim_value, decode, Claim};
use super::tls::{tls_failure_in, TlsOptions, TrustedRoots};

/// Returns the live value, or sets the claim (ARGV[1]) with the lease (ARGV[2], ms) and
/// returns an empty string.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
";

/// Deletes the key only if it still holds our claim (a claim that expired and was taken
/// over is someone else's now).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Extends the key's expiry to ARGV[2] ms only while it still holds our claim (ARGV[1]):
/// 1 when it did, 0 when the claim is gone, someone else's, or replaced by a result.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Bounds every command, so an unreachable or hung server delays an event by this at
/// most per call before it is handled without the store. An event waits on two calls
/// (its claim, its result) before its ack, which Feishu expects within 3 s: at 2 s each,
/// as before, a hung server's events were acked after 4 s. A Redis that takes a second
/// to answer is an outage.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

pub struct RedisStore {
    client: redis::Client,
    /// Made on first use, inside the runtime (the manager spawns its connection task).
    manager: OnceLock<Result<ConnectionManager, String>>,
    prefix: String,
    claim: Script,
    release: Script,
    renew: Script,
}

impl RedisStore {
    /// Checks the URL; connects nothing (an unreachable server must not stop the bot:
    /// events are then handled without the store).
    ///
    /// `rediss://` gets the transport's roots (`tls`): the crate cannot take a rustls
    /// `ClientConfig`, only roots as PEM, and PEM roots *replace* its own bundled set, so
    /// it is given the whole set the sockets trust (bundled Mozilla roots, `tls.caPem`,
    /// the system's roots when asked). Its `#insecure` URL form is refused by
    /// [`StoreSpec::parse`](super::store::StoreSpec::parse), and the crate is built without
    /// the feature that would honour it.
    pub fn open(url: &str, app_id: &str, tls: &TlsOptions) -> Result<RedisStore, TransportError> {
        // The crate's error may quote the URL: only its kind is shown (the message is
        // scrubbed of the password as well, by the caller's redactor).
        let unusable = |e: redis::RedisError| {
            TransportError::invalid_config(format!(
                "dedupe.store: the Redis URL is not usable ({:?})",
                e.kind()
            ))
        };
        let client = if url.starts_with("rediss://") {
            let roots = TrustedRoots::load(tls)?.pem().into_bytes();
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots),
            };
            redis::Client::build_with_tls(url, certs).map_err(unusable)?
        } else {
            redis::Client::open(url).map_err(unusable)?
        };
        Ok(RedisStore {
            client,
            manager: OnceLock::new(),
            prefix: format!("feishu-transport:dedupe:{app_id}:"),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
        })
    }

    fn connection(&self) -> Result<ConnectionManager, String> {
        self.manager
            .get_or_init(|| {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_lazy_with_config(self.client.clone(), cfg)
                    .map_err(|e| failure(&e))
            })
            .clone()
    }

    fn key(&self, event_id: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + event_id.len());
        k.push_str(&self.prefix);
        k.push_str(event_id);
        k
    }

    pub async fn claim(
        &self,
        event_id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, String> {
        let mut conn = self.connection()?;
        let value: Vec<u8> = self
            .claim
            .key(self.key(event_id))
            .arg(claim_value(owner))
            .arg(lease.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| failure(&e))?;
        Ok(if value.is_empty() {
            Claim::Owned
        } else {
            decode(&value)
        })
    }

    pub async fn complete(
        &self,
        event_id: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), String> {
        let mut conn = self.connection()?;
        redis::cmd("SET")
            .arg(self.key(event_id))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| failure(&e))
    }

    pub async fn release(&self, event_id: &str, owner: &str) -> Result<(), String> {
        let mut conn = self.connection()?;
        self.release
            .key(self.key(event_id))
            .arg(claim_value(owner))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| failure(&e))
    }

    /// Extends our claim by `lease` while it is still ours: `Ok(false)` when it is not.
    pub async fn renew(
        &self,
        event_id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, String> {
        let mut conn = self.connection()?;
        self.renew
            .key(self.key(event_id))
            .arg(claim_value(owner))
            .arg(lease.as_millis().max(1) as u64)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|n| n == 1)
            .map_err(|e| failure(&e))
    }
}

/// A failed call, for the log line and `status`: a TLS failure is explained as the
/// transport's own sockets explain it (an untrusted certificate names `tls.caPem`).
fn failure(e: &redis::RedisError) -> String {
    match tls_failure_in(e) {
        Some(why) => format!("Redis over TLS: {why}"),
        None => format!("Redis: {e}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::frame::AckPayload;
    use crate::core::store::result_value;

    /// A real redis-server on a free loopback port (no persistence), killed on drop (also
    /// used by durable.rs's tests).
    pub(crate) struct Server {
        child: std::process::Child,
        pub(crate) port: u16,
    }

    impl Server {
        pub(crate) async fn start() -> Server {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is not installed: this test needs a real one (apt-get install -y redis-server; .ci/run installs it)");
            let server = Server { child, port };
            let up = async {
                while tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), up)
                .await
                .expect("redis-server did not listen within 10 s");
            server
        }
    }

    impl Server {
        /// A store on this server for the app `cli_a`.
        pub(crate) fn open(&self) -> RedisStore {
            let url = format!("redis://127.0.0.1:{}", self.port);
            RedisStore::open(&url, "cli_a", &TlsOptions::default()).unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn a_renewal_extends_only_our_own_claim() {
        let server = Server::start().await;
        let s = server.open();
        let lease = Duration::from_millis(300);
        assert_eq!(s.claim("e1", "a:1", lease).await, Ok(Claim::Owned));
        // Renewed past its first lease: still held a lease and a half later.
        tokio::time::sleep(lease * 2 / 3).await;
        assert_eq!(s.renew("e1", "a:1", lease).await, Ok(true));
        tokio::time::sleep(lease * 2 / 3).await;
        assert_eq!(s.claim("e1", "b:1", lease).await, Ok(Claim::Held));
        // Another owner's claim (a takeover) is neither extended nor ours.
        assert_eq!(s.renew("gone", "a:2", lease).await, Ok(false));
        assert_eq!(s.claim("e3", "b:3", lease / 3).await, Ok(Claim::Owned));
        assert_eq!(s.renew("e3", "a:3", lease * 100).await, Ok(false));
        tokio::time::sleep(lease / 2).await;
        assert_eq!(
            s.claim("e3", "c:3", lease).await,
            Ok(Claim::Owned),
            "the other owner's claim expired on its own lease"
        );
        // A result is not a claim: a late renewal leaves its expiry as it is.
        s.complete("e1", result_value(&AckPayload::Ok), lease / 3)
            .await
            .unwrap();
        assert_eq!(s.renew("e1", "a:1", lease * 100).await, Ok(false));
        assert_eq!(
            s.claim("e1", "d:1", lease).await,
            Ok(Claim::Done(AckPayload::Ok))
        );
        tokio::time::sleep(lease / 2).await;
        assert_eq!(s.claim("e1", "d:2", lease).await, Ok(Claim::Owned));
    }

    /// Sends `signal` to the server's process (`kill`, as std has no signals).
    fn signal(server: &Server, signal: &str) {
        let pid = server.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    #[tokio::test]
    async fn a_hung_server_answers_each_call_with_an_error_within_a_second_or_so() {
        let server = Server::start().await;
        let s = server.open();
        let lease = Duration::from_secs(60);
        assert_eq!(s.claim("e1", "a:1", lease).await, Ok(Claim::Owned));
        // Stopped, not gone: the socket stays open and nothing answers.
        signal(&server, "-STOP");
        // A claim and a result each wait this long at most, both within the 3 s in
        // which Feishu expects the ack; the first and the later calls alike.
        for call in 0..3 {
            let started = std::time::Instant::now();
            let found = s.claim(&format!("h{call}"), "a:2", lease).await;
            let waited = started.elapsed();
            assert!(found.is_err(), "{found:?}");
            assert!(
                waited < Duration::from_millis(1500),
                "call {call}: {waited:?}"
            );
        }
        signal(&server, "-CONT");
        // Answering again, the same store is used again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for attempt in 0.. {
            // A fresh key each time: an attempt that timed out may still have claimed its own.
            if s.claim(&format!("e2.{attempt}"), "a:3", lease).await == Ok(Claim::Owned) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not answering again");
        }
    }
}
