//! The durable dedupe store's vocabulary, shared by its backends (`store_sqlite`,
//! `store_redis`) and the event path that uses them (`durable`): which store
//! `dedupe.store` names, what a claim finds, and how a row's value is written.
//!
//! Every backend keeps one value per `(app id, event id)`, with an expiry:
//! - a *claim* (`C` + the owner's token), expiring after the lease, while a handler runs;
//! - a *result* (`D`: a bare 200, or `J` + the handler's JSON), expiring after `ttlMs`.
//!
//! Failures are never stored: a failed handler deletes its own claim.

use std::fmt;
use std::path::PathBuf;

use super::error::TransportError;
use super::frame::AckPayload;

/// Where `dedupe.store` keeps claims and results.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreSpec {
    /// This process's memory only (the default).
    #[default]
    Memory,
    /// A SQLite file (WAL), shared by the processes of one host.
    Sqlite(PathBuf),
    /// A Redis (or Valkey) server, shared by any number of hosts. The URL may hold a
    /// password, so this is never printed whole (see the `Debug` impl).
    Redis(String),
}

/// What `dedupe.store` accepts, for error messages.
pub const ACCEPTED_FORMS: &str =
    "'memory', 'sqlite:<path>' (a file path), 'redis://[user:password@]host[:port][/db]' or 'rediss://…' (TLS)";

impl StoreSpec {
    /// Parses `dedupe.store`. INVALID_CONFIG names the accepted forms and never echoes a
    /// URL (it may hold a password).
    pub fn parse(s: &str) -> Result<StoreSpec, TransportError> {
        let bad = |why: &str| {
            TransportError::invalid_config(format!(
                "dedupe.store {why}; accepted forms: {ACCEPTED_FORMS}"
            ))
        };
        if s == "memory" {
            return Ok(StoreSpec::Memory);
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() || path.chars().any(char::is_control) {
                return Err(bad("'sqlite:' needs a file path after it"));
            }
            return Ok(StoreSpec::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("redis://") || s.starts_with("rediss://") {
            let url =
                url::Url::parse(s).map_err(|e| bad(&format!("is not a valid Redis URL ({e})")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad("is a Redis URL without a host"));
            }
            // The redis crate reads `#insecure` as "do not verify the certificate".
            // Certificates are always verified here: a private CA goes in `tls.caPem`.
            if url.fragment().is_some() {
                return Err(bad("takes no '#…' part (certificates are always verified: trust a private CA with tls.caPem)"));
            }
            return Ok(StoreSpec::Redis(s.to_string()));
        }
        // Not echoed: a mistyped URL may still hold a password.
        Err(bad(&format!(
            "is not understood (a string of {} characters, not shown)",
            s.chars().count()
        )))
    }

    /// `memory`, `sqlite` or `redis`: what `status().store.kind` reports.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreSpec::Memory => "memory",
            StoreSpec::Sqlite(_) => "sqlite",
            StoreSpec::Redis(_) => "redis",
        }
    }

    /// The Redis password, raw and as written in the URL, for the redactor to hide.
    pub fn secrets(&self) -> Vec<String> {
        let StoreSpec::Redis(s) = self else {
            return Vec::new();
        };
        let Ok(url) = url::Url::parse(s) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // `redis://:password@host` and `redis://user:password@host`; a lone
        // `redis://password@host` is read by the redis crate as a username, but it is
        // hidden too since operators write it meaning a password.
        for written in [url.password().unwrap_or(""), url.username()] {
            if written.is_empty() {
                continue;
            }
            let decoded = percent_encoding::percent_decode_str(written)
                .decode_utf8_lossy()
                .to_string();
            if decoded != written {
                out.push(decoded);
            }
            out.push(written.to_string());
            if url.password().is_some() {
                // Only the password is secret when both are given.
                break;
            }
        }
        out
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Memory => f.write_str("Memory"),
            StoreSpec::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            // Never the URL: it may hold a password.
            StoreSpec::Redis(_) => f.write_str("Redis(<url not shown>)"),
        }
    }
}

/// What claiming an event in the store found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Nobody held it: this delivery owns it now, for the lease.
    Owned,
    /// Already handled successfully (here or by another process): ack with this.
    Done(AckPayload),
    /// Another delivery holds a live claim (its handler is running, or its holder died
    /// and the lease has not run out yet).
    Held,
}

/// A stored claim of `owner`.
pub fn claim_value(owner: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(owner.len() + 1);
    v.push(b'C');
    v.extend_from_slice(owner.as_bytes());
    v
}

/// A stored success. `Failed` is never stored (callers release the claim instead).
pub fn result_value(payload: &AckPayload) -> Vec<u8> {
    match payload {
        AckPayload::OkWithData(json) => {
            let mut v = Vec::with_capacity(json.len() + 1);
            v.push(b'J');
            v.extend_from_slice(json);
            v
        }
        AckPayload::Ok | AckPayload::Failed => b"D".to_vec(),
    }
}

/// What a live stored value means for a new delivery. An unknown value (written by a
/// newer version, or not by us) counts as a live claim: never handled twice on a guess.
pub fn decode(value: &[u8]) -> Claim {
    match value.split_first() {
        Some((b'D', [])) => Claim::Done(AckPayload::Ok),
        Some((b'J', json)) => Claim::Done(AckPayload::OkWithData(json.to_vec())),
        _ => Claim::Held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        assert_eq!(StoreSpec::parse("memory").unwrap(), StoreSpec::Memory);
        assert_eq!(
            StoreSpec::parse("sqlite:/var/lib/bot/dedupe.db").unwrap(),
            StoreSpec::Sqlite("/var/lib/bot/dedupe.db".into())
        );
        assert_eq!(
            StoreSpec::parse("sqlite:dedupe.db").unwrap().kind(),
            "sqlite"
        );
        for url in ["redis://127.0.0.1:6379", "rediss://:pw@cache.example.com/2"] {
            assert_eq!(StoreSpec::parse(url).unwrap().kind(), "redis");
        }
    }

    #[test]
    fn rejects_anything_else_naming_the_forms_without_echoing_it() {
        for bad in [
            "",
            "Memory",
            "sqlite:",
            "sqlite",
            "mysql://root:hunter22@db/x",
            "redis://",
            "redis://:hunter22@[bad",
            "file:/tmp/x",
            "rediss://:hunter22@127.0.0.1:6380/#insecure",
        ] {
            let e = StoreSpec::parse(bad).unwrap_err();
            assert_eq!(e.code.as_str(), "INVALID_CONFIG", "{bad}");
            assert!(e.message.contains("'sqlite:<path>'"), "{}", e.message);
            assert!(!e.message.contains("hunter22"), "{}", e.message);
        }
    }

    #[test]
    fn the_redis_password_is_a_secret_and_never_debug_printed() {
        let spec = StoreSpec::parse("redis://bot:p%40ss%3Aword@cache:6379/0").unwrap();
        let secrets = spec.secrets();
        assert!(secrets.contains(&"p@ss:word".to_string()), "{secrets:?}");
        assert!(
            secrets.contains(&"p%40ss%3Aword".to_string()),
            "{secrets:?}"
        );
        assert!(
            !secrets.contains(&"bot".to_string()),
            "the user is not secret"
        );
        assert!(!format!("{spec:?}").contains("word"));
        let lone = StoreSpec::parse("redis://hunter22@cache").unwrap();
        assert_eq!(lone.secrets(), vec!["hunter22".to_string()]);
        assert!(StoreSpec::parse("redis://cache")
            .unwrap()
            .secrets()
            .is_empty());
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(
            decode(&result_value(&AckPayload::Ok)),
            Claim::Done(AckPayload::Ok)
        );
        let data = AckPayload::OkWithData(br#"{"a":1}"#.to_vec());
        assert_eq!(decode(&result_value(&data)), Claim::Done(data));
        assert_eq!(decode(&claim_value("p1:7")), Claim::Held);
        assert_eq!(decode(b""), Claim::Held);
        assert_eq!(
            decode(b"D?"),
            Claim::Held,
            "unknown values are never results"
        );
    }
}
