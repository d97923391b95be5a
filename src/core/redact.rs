//! Keeping secrets out of logs and error messages (README "Security", docs/ARCHITECTURE.md
//! "Secrets and logs").
//!
//! Two layers, because neither is enough alone: the literal secrets the transport knows
//! (the app secret) are hidden wherever they appear, and values that merely look secret by
//! their key (`access_key=…`, `"token":"…"`, `Bearer …`) are hidden by pattern, so a
//! ticket or token minted by the server never reaches a log either. This runs on every log
//! line, so the scan is a single pass over the bytes that allocates only when it finds
//! something to hide.

use std::borrow::Cow;

/// The longest log line, in characters, once made single-line.
pub const MAX_LOG_CHARS: usize = 500;

const REDACTED: &str = "[redacted]";

/// Literal secrets shorter than this are not hidden: replacing every "abc" in a log would
/// destroy the log and hide nothing worth hiding.
const MIN_SECRET_CHARS: usize = 4;

/// The longest message an error keeps before it is scrubbed of literal secrets and cut
/// to [`MAX_LOG_CHARS`]: a bound on memory only. It is well past `MAX_LOG_CHARS` so that
/// the secret-aware cut of [`Redactor::finish`] is the one a reader sees.
pub const MAX_RAW_CHARS: usize = 4 * MAX_LOG_CHARS;

/// How many values learned at run time (`access_key`, `ticket`) are kept: the current
/// socket URL's and a few before it, for messages about a connection that was just
/// replaced. Each URL brings two.
const MAX_LEARNED: usize = 8;

/// Hides known secret values and secret-looking patterns.
///
/// The literal secrets are the configured ones (the app secret, proxy passwords and
/// their `Basic` form) plus values learned while a run lives: the `access_key` and
/// `ticket` of each discovered socket URL, which a server may echo without their key
/// (`invalid ticket T-1`) where no pattern can recognise them.
#[derive(Debug, Default)]
pub struct Redactor {
    configured: Vec<String>,
    learned: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// `configured` and `learned` together, longest first; rebuilt on [`Redactor::learn`]
    /// and shared by readers without copying.
    all: std::sync::RwLock<std::sync::Arc<Vec<String>>>,
}

/// `secrets` without the empty and very short ones, longest first, without repeats.
fn usable(secrets: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut secrets: Vec<String> = secrets
        .into_iter()
        .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
        .collect();
    // Longest first, so a secret that contains another is hidden whole instead of
    // leaving its remainder around the shorter one's marker.
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    secrets
}

impl Redactor {
    /// `secrets` are literal values to hide (the app secret); empty and very short ones
    /// (fewer than 4 characters) are ignored.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let configured = usable(secrets);
        Redactor {
            all: std::sync::RwLock::new(std::sync::Arc::new(configured.clone())),
            configured,
            learned: Default::default(),
        }
    }

    /// Adds values to hide from now on (the `access_key` and `ticket` of a socket URL);
    /// the oldest learned values beyond the last few are forgotten.
    pub fn learn(&self, values: impl IntoIterator<Item = String>) {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        for v in values {
            if !learned.contains(&v) {
                learned.push_back(v);
            }
        }
        while learned.len() > MAX_LEARNED {
            learned.pop_front();
        }
        let all = usable(self.configured.iter().chain(learned.iter()).cloned());
        *self.all.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(all);
    }

    /// The `access_key`, `ticket` and other secret query values of a socket URL, learned
    /// as by [`Redactor::learn`], both as sent and percent-decoded.
    pub fn learn_url(&self, url: &str) {
        self.learn(secret_query_values(url));
    }

    fn secrets(&self) -> std::sync::Arc<Vec<String>> {
        self.all.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `s` with every literal secret and every secret-looking value replaced by
    /// `[redacted]`.
    pub fn redact(&self, s: &str) -> String {
        let secrets = self.secrets();
        let mut literal: Option<String> = None;
        for secret in secrets.iter() {
            let current = literal.as_deref().unwrap_or(s);
            if current.contains(secret.as_str()) {
                literal = Some(current.replace(secret.as_str(), REDACTED));
            }
        }
        match literal {
            None => redact_cow(s).into_owned(),
            Some(text) => match redact_cow(&text) {
                Cow::Borrowed(_) => text,
                Cow::Owned(redacted) => redacted,
            },
        }
    }

    /// A log line or an error message as a reader sees it: redacted, then single-line and
    /// at most [`MAX_LOG_CHARS`] characters. Redaction comes first so the cut can never
    /// turn a secret into an unrecognisable prefix; and a text that was already cut
    /// before it got here (an error's [`MAX_RAW_CHARS`] bound) may end in such a prefix,
    /// which is hidden too.
    pub fn finish(&self, s: &str) -> String {
        let line = single_line(&self.redact(s), MAX_LOG_CHARS);
        let Some(kept) = line.strip_suffix("...") else {
            return line;
        };
        let Some(at) = self.trailing_prefix(kept) else {
            return line;
        };
        // Room for the marker: cutting further may end the text in another prefix, so
        // look again until it ends in none.
        let room = MAX_LOG_CHARS - 3 - REDACTED.len();
        let mut text = kept[..at].to_string();
        loop {
            if let Some((cut, _)) = text.char_indices().nth(room) {
                text.truncate(cut);
            }
            match self.trailing_prefix(&text) {
                Some(at) => text.truncate(at),
                None => break,
            }
        }
        let mut out = text;
        out.push_str(REDACTED);
        out.push_str("...");
        out
    }

    /// Same as [`Redactor::finish`]: the name log lines have always used.
    pub fn log_line(&self, s: &str) -> String {
        self.finish(s)
    }

    /// Where `text` ends in the start of a literal secret at least [`MIN_SECRET_CHARS`]
    /// long (the rest cut away), as the byte offset of that start.
    fn trailing_prefix(&self, text: &str) -> Option<usize> {
        let secrets = self.secrets();
        let mut found: Option<usize> = None;
        for secret in secrets.iter() {
            // Every proper prefix of at least the minimum length; of several matches the
            // earliest start hides the most.
            for (end, _) in secret.char_indices().skip(MIN_SECRET_CHARS) {
                let prefix = &secret[..end];
                if text.ends_with(prefix) {
                    let at = text.len() - prefix.len();
                    found = Some(found.map_or(at, |f: usize| f.min(at)));
                }
            }
        }
        found
    }
}

/// The values of a URL's secret query parameters (`access_key`, `ticket`, anything naming
/// a token, secret, key or password), raw and percent-decoded.
pub fn secret_query_values(url: &str) -> Vec<String> {
    let query = match url.split_once('?') {
        Some((_, q)) => q.split('#').next().unwrap_or(""),
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    for pair in query.split('&') {
        let Some((_, raw)) = pair.split_once('=') else {
            continue;
        };
        let Some((name, decoded)) = url::form_urlencoded::parse(pair.as_bytes()).next() else {
            continue;
        };
        if !is_secret_param(&name) {
            continue;
        }
        out.push(raw.to_string());
        if decoded != raw {
            out.push(decoded.into_owned());
        }
    }
    out
}

/// `s` with secret-looking values replaced by `[redacted]`: `Bearer <token>`,
/// `Authorization: <value>`, the password of `scheme://user:password@host`, and the value
/// of `key=value`, `key: value`, `"key":"value"` where the key names a secret (`token`,
/// `access_token`, `appSecret`, `password`, `ticket`, `access_key`, `client_assertion`,
/// … in any case, with `_`, `-` or `.` anywhere, and with any prefix such as `tenant_` or
/// `x-`).
pub fn redact_patterns(s: &str) -> String {
    redact_cow(s).into_owned()
}

/// Key endings that name a secret, lowercase with separators removed. A key matches when,
/// lowercased and stripped of `_`, `-` and `.`, it ends with one of them; so
/// `tenant_access_token`, `appSecret`, `X-Api-Key` and `client_assertion` all match.
const SECRET_KEYS: &[&[u8]] = &[
    b"token",
    b"secret",
    b"password",
    b"passwd",
    b"ticket",
    b"accesskey",
    b"apikey",
    b"encryptkey",
    b"privatekey",
    b"clientassertion",
    b"authorization",
];

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Where an unquoted value ends.
fn is_terminator(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'&' | b'"' | b'\'' | b',' | b';' | b'}' | b')')
}

fn is_secret_key(key: &[u8]) -> bool {
    SECRET_KEYS.iter().any(|word| ends_with_word(key, word))
}

fn ends_with_word(key: &[u8], word: &[u8]) -> bool {
    let mut letters = key
        .iter()
        .rev()
        .filter(|b| !matches!(b, b'_' | b'-' | b'.'))
        .map(u8::to_ascii_lowercase);
    word.iter().rev().all(|w| letters.next() == Some(*w))
}

fn is_authorization(key: &[u8]) -> bool {
    ends_with_word(key, b"authorization")
}

/// First index at or after `from` whose byte ends an unquoted value.
fn value_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| is_terminator(c))
        .map_or(b.len(), |p| from + p)
}

/// The secret part of a value starting at `k` (just past `key=` and its blanks), as a byte
/// range; `None` when there is nothing to hide.
fn value_span(b: &[u8], k: usize, authorization: bool) -> Option<(usize, usize)> {
    if k >= b.len() {
        return None;
    }
    // `\"value\"`: JSON that was itself embedded in a JSON string.
    let backslashes = b[k..].iter().take_while(|&&c| c == b'\\').count();
    if backslashes > 0 && matches!(b.get(k + backslashes), Some(b'"' | b'\'')) {
        let quote = b[k + backslashes];
        let start = k + backslashes + 1;
        let mut end = start;
        while end < b.len() && b[end] != quote && b[end] != b'\n' && b[end] != b'\r' {
            end += 1;
        }
        // the escaping backslashes of the closing quote belong to the JSON, not the value
        while end > start && b[end - 1] == b'\\' {
            end -= 1;
        }
        return (end > start).then_some((start, end));
    }
    match b[k] {
        quote @ (b'"' | b'\'') => {
            let start = k + 1;
            let mut end = start;
            // An unclosed quote (a truncated message) hides the rest of the line: the
            // value's end is unknowable, and showing part of it is the worse mistake.
            while end < b.len() && b[end] != quote && b[end] != b'\n' && b[end] != b'\r' {
                end += if b[end] == b'\\' { 2 } else { 1 };
            }
            let end = end.min(b.len());
            (end > start).then_some((start, end))
        }
        // A nested object or array is structure, not a value; its own keys get scanned.
        b'{' | b'[' => None,
        c if is_terminator(c) => None,
        _ => {
            let first_end = value_end(b, k);
            let word = &b[k..first_end];
            let scheme = if authorization {
                word.iter().all(u8::is_ascii_alphabetic)
            } else {
                word.eq_ignore_ascii_case(b"bearer") || word.eq_ignore_ascii_case(b"basic")
            };
            if scheme {
                // `Authorization: Bearer abc`: the credential is the second word. Keep the
                // scheme, which helps debugging and is what the `Bearer` rule produces.
                let mut cred = first_end;
                while cred < b.len() && matches!(b[cred], b' ' | b'\t') {
                    cred += 1;
                }
                if cred > first_end && cred < b.len() && !is_terminator(b[cred]) {
                    return Some((cred, value_end(b, cred)));
                }
            }
            Some((k, first_end))
        }
    }
}

/// A `key=value` / `key: value` / `"key":"value"` whose separator is at `i`.
fn key_value(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
        j -= 1;
    }
    if j > 0 && matches!(b[j - 1], b'"' | b'\'') {
        j -= 1;
        while j > 0 && b[j - 1] == b'\\' {
            j -= 1;
        }
    }
    let key_end = j;
    while j > 0 && is_key_char(b[j - 1]) {
        j -= 1;
    }
    let key = &b[j..key_end];
    if key.is_empty() || !is_secret_key(key) {
        return None;
    }
    let mut k = i + 1;
    if b[i] == b'=' && b.get(k) == Some(&b'>') {
        k += 1;
    }
    while k < b.len() && matches!(b[k], b' ' | b'\t') {
        k += 1;
    }
    value_span(b, k, is_authorization(key))
}

/// `Bearer <token>`, the word starting at `i`.
fn bearer(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && is_key_char(b[i - 1]) {
        return None;
    }
    let word = b.get(i..i + 6)?;
    if !word.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let mut k = i + 6;
    while k < b.len() && matches!(b[k], b' ' | b'\t') {
        k += 1;
    }
    if k == i + 6 || k >= b.len() || is_terminator(b[k]) {
        return None;
    }
    Some((k, value_end(b, k)))
}

/// The password of `scheme://user:password@host`, where `i` is the scheme's `:`.
fn userinfo_password(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if b.get(i + 1..i + 3) != Some(b"//") {
        return None;
    }
    let start = i + 3;
    let mut at = None;
    let mut end = start;
    while end < b.len()
        && !matches!(b[end], b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>')
        && !b[end].is_ascii_whitespace()
    {
        if b[end] == b'@' {
            at = Some(end);
        }
        end += 1;
    }
    let at = at?;
    let colon = start + b[start..at].iter().position(|&c| c == b':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

fn redact_cow(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let found = match b[i] {
            b':' => {
                // Not a skip: the user name before it may itself hold `key=value`.
                if let Some(span) = userinfo_password(b, i) {
                    spans.push(span);
                }
                key_value(b, i)
            }
            b'=' => key_value(b, i),
            b'b' | b'B' => bearer(b, i),
            _ => None,
        };
        match found {
            Some((start, end)) => {
                spans.push((start, end));
                // Resuming past the value keeps the scan linear and stops a value's own
                // content from being read as further keys.
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(s);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(s.len() + spans.len() * REDACTED.len());
    let mut copied = 0;
    for (start, end) in spans {
        // Every span starts and ends at an ASCII byte or the end of `s`, so these slices
        // are on char boundaries; the merge below only ever widens a span.
        if end <= copied {
            continue;
        }
        if start >= copied {
            out.push_str(&s[copied..start]);
            out.push_str(REDACTED);
        }
        copied = end;
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// `s` on one line: CR, LF, tabs, other control characters and whitespace runs become one
/// space, the ends are trimmed, and the result is cut to at most `max_chars` characters
/// (never inside a character), ending in `...` when cut.
pub fn single_line(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(4)));
    let mut chars = 0usize;
    let mut pending_space = false;
    let mut cut = false;
    for c in s.chars() {
        // is_whitespace covers U+2028/U+2029 and friends, which split lines in some
        // viewers although they are not control characters.
        if c.is_control() || c.is_whitespace() {
            pending_space = chars > 0;
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if chars.saturating_add(needed) > max_chars {
            cut = true;
            break;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    if cut {
        let dots = max_chars.min(3);
        while chars + dots > max_chars {
            out.pop();
            chars -= 1;
        }
        while out.ends_with(' ') {
            out.pop();
        }
        out.extend(std::iter::repeat_n('.', dots));
    }
    out
}

/// Names of URL query parameters whose values are hidden: the endpoint URL's
/// `access_key` and `ticket`, and anything that names a token, secret, key or password.
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "key",
        "password",
        "passwd",
        "ticket",
        "auth",
        "signature",
    ]
    .iter()
    .any(|w| name.contains(w))
}

fn redact_query(query: &str, out: &mut String) {
    for (n, pair) in query.split('&').enumerate() {
        if n > 0 {
            out.push('&');
        }
        let hidden = pair.split_once('=').filter(|_| {
            url::form_urlencoded::parse(pair.as_bytes())
                .next()
                .is_some_and(|(name, _)| is_secret_param(&name))
        });
        match hidden {
            Some((raw_name, _)) => {
                out.push_str(raw_name);
                out.push('=');
                out.push_str(REDACTED);
            }
            None => out.push_str(pair),
        }
    }
}

/// `url` with the values of secret query parameters (`access_key`, `ticket`, and any
/// `*token*`, `*secret*`, `*key*`, `*password*`, `*auth*`, `*signature*`) and the userinfo
/// password replaced by `[redacted]`; other parameters are kept. Something that does not
/// parse as a URL is redacted by pattern instead.
pub fn redact_url(url: &str) -> String {
    use url::Position;
    let Ok(parsed) = url::Url::parse(url) else {
        return redact_patterns(url);
    };
    let mut out = String::with_capacity(url.len() + 16);
    if parsed.password().is_some() {
        out.push_str(&parsed[..Position::BeforePassword]);
        out.push_str(REDACTED);
        out.push_str(&parsed[Position::AfterPassword..Position::AfterPath]);
    } else {
        out.push_str(&parsed[..Position::AfterPath]);
    }
    if let Some(query) = parsed.query() {
        out.push('?');
        redact_query(query, &mut out);
    }
    if let Some(fragment) = parsed.fragment() {
        out.push('#');
        // OAuth's implicit flow puts `access_token=` in the fragment.
        redact_query(fragment, &mut out);
    }
    // The path can still carry a `key=value` (matrix parameters, a token segment after
    // `Bearer`); the pattern pass leaves the markers above as they are.
    redact_cow(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> String {
        redact_patterns(s)
    }

    #[test]
    fn openclaw_expectations() {
        assert_eq!(
            r("connect failed\nAuthorization: Bearer token_abc appSecret=secret_abc"),
            "connect failed\nAuthorization: Bearer [redacted] appSecret=[redacted]"
        );
        assert_eq!(
            r("WebSocket reconnect exhausted after 3 attempts\nBearer token_abc"),
            "WebSocket reconnect exhausted after 3 attempts\nBearer [redacted]"
        );
        assert_eq!(
            r("access_token=secret_token\nmore"),
            "access_token=[redacted]\nmore"
        );
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(r("Bearer abc.def-ghi"), "Bearer [redacted]");
        assert_eq!(r("bearer\tabc"), "bearer\t[redacted]");
        assert_eq!(r("(Bearer abc) done"), "(Bearer [redacted]) done");
        // not a word of its own, or nothing after it: left alone
        assert_eq!(r("xBearer abc"), "xBearer abc");
        assert_eq!(r("Bearer"), "Bearer");
        assert_eq!(r("Bearer "), "Bearer ");
        assert_eq!(r("Bearers abc"), "Bearers abc");
    }

    #[test]
    fn authorization_values() {
        assert_eq!(r("Authorization: abc123"), "Authorization: [redacted]");
        assert_eq!(r("authorization=abc&x=1"), "authorization=[redacted]&x=1");
        assert_eq!(
            r("authorization: Basic dXNlcjpwYXNz, next"),
            "authorization: Basic [redacted], next"
        );
        assert_eq!(
            r("Proxy-Authorization: Bearer abc"),
            "Proxy-Authorization: Bearer [redacted]"
        );
        assert_eq!(
            r(r#"{"Authorization":"Bearer abc"}"#),
            r#"{"Authorization":"[redacted]"}"#
        );
        assert_eq!(r("Authorization: token"), "Authorization: [redacted]");
        assert_eq!(r("token: Bearer abc x"), "token: Bearer [redacted] x");
        assert_eq!(r("token: bearer"), "token: [redacted]");
    }

    #[test]
    fn every_listed_key_in_every_form() {
        let keys = [
            "access_key",
            "ticket",
            "access_token",
            "tenant_access_token",
            "app_access_token",
            "user_access_token",
            "refresh_token",
            "token",
            "app_secret",
            "appsecret",
            "appSecret",
            "APP_SECRET",
            "secret",
            "password",
            "client_assertion",
            "clientAssertion",
            "clientassertion",
        ];
        for key in keys {
            for (input, expected) in [
                (
                    format!("{key}=v4lue&next=1"),
                    format!("{key}=[redacted]&next=1"),
                ),
                (
                    format!(r#"{{"{key}":"v4 lue","n":1}}"#),
                    format!(r#"{{"{key}":"[redacted]","n":1}}"#),
                ),
                (
                    format!(r#"{{"{key}" : "v4lue"}}"#),
                    format!(r#"{{"{key}" : "[redacted]"}}"#),
                ),
                (format!("{key}: v4lue ok"), format!("{key}: [redacted] ok")),
                (format!("{key} = 'v4lue'"), format!("{key} = '[redacted]'")),
            ] {
                assert_eq!(r(&input), expected, "{input}");
            }
        }
    }

    #[test]
    fn values_end_at_the_listed_terminators() {
        for t in [" ", "\t", "\n", "&", "\"", "'", ",", ";", "}", ")"] {
            assert_eq!(
                r(&format!("token=abc{t}rest")),
                format!("token=[redacted]{t}rest")
            );
        }
        assert_eq!(r("token=a:b/c?d=e"), "token=[redacted]");
    }

    #[test]
    fn non_secret_keys_are_kept() {
        for s in [
            "type=event message_id=m1 sum=2 seq=0",
            "code: 1000040345, msg: app_id or app_secret is invalid",
            "token_type=Bearer_like tokens=3 keynote=x",
            "https://open.feishu.cn/callback/ws/endpoint",
            "time 12:30:45, ratio a=b",
            "",
        ] {
            assert_eq!(r(s), s);
        }
    }

    #[test]
    fn prefixed_and_suffixed_key_names_match() {
        assert_eq!(r("X-Api-Key: k123"), "X-Api-Key: [redacted]");
        assert_eq!(r("encrypt_key=k123"), "encrypt_key=[redacted]");
        assert_eq!(r("db.password=p"), "db.password=[redacted]");
        assert_eq!(r("sessionToken=t"), "sessionToken=[redacted]");
        assert_eq!(r("app_ticket=t"), "app_ticket=[redacted]");
    }

    #[test]
    fn quoted_values_with_escapes_and_embedded_json() {
        assert_eq!(
            r(r#"{"token":"a\"b c","x":1}"#),
            r#"{"token":"[redacted]","x":1}"#
        );
        assert_eq!(
            r(r#"body: "{\"app_secret\":\"s3cr3t x\",\"a\":1}""#),
            r#"body: "{\"app_secret\":\"[redacted]\",\"a\":1}""#
        );
        // an unclosed quote hides the rest of the line, not less
        assert_eq!(
            r("{\"token\":\"abc def\nnext"),
            "{\"token\":\"[redacted]\nnext"
        );
        assert_eq!(r(r#"{"token":""}"#), r#"{"token":""}"#);
        // nested structure is scanned, not swallowed
        assert_eq!(
            r(r#"{"token":{"secret":"x","id":1}}"#),
            r#"{"token":{"secret":"[redacted]","id":1}}"#
        );
    }

    #[test]
    fn several_secrets_on_one_line() {
        assert_eq!(
            r("wss://h/ws?device_id=d&access_key=AK&service_id=1&ticket=TK x"),
            "wss://h/ws?device_id=d&access_key=[redacted]&service_id=1&ticket=[redacted] x"
        );
        assert_eq!(
            r("password=abc,token=xyz;Bearer q"),
            "password=[redacted],token=[redacted];Bearer [redacted]"
        );
    }

    #[test]
    fn url_userinfo_password() {
        assert_eq!(
            r("proxy http://user:p4ss@proxy:8080/x failed"),
            "proxy http://user:[redacted]@proxy:8080/x failed"
        );
        assert_eq!(r("ssh://git@host/repo"), "ssh://git@host/repo");
        assert_eq!(
            r("x://token=SECRET:pw@host"),
            "x://token=[redacted]",
            "a key=value in the user name is hidden too"
        );
    }

    #[test]
    fn redaction_is_idempotent() {
        let once = r("Authorization: Bearer a token=b \"secret\":\"c\" http://u:p@h");
        assert_eq!(r(&once), once);
    }

    #[test]
    fn literal_secrets_are_hidden_anywhere() {
        let red = Redactor::new(["S3cretValue".to_string()]);
        assert_eq!(
            red.redact("wss://x/?q=S3cretValue&y=1 {\"a\":\"xS3cretValuex\"}"),
            "wss://x/?q=[redacted]&y=1 {\"a\":\"x[redacted]x\"}"
        );
        assert_eq!(red.redact("nothing here"), "nothing here");
        assert_eq!(
            red.redact("S3cretValue token=abc"),
            "[redacted] token=[redacted]"
        );
    }

    #[test]
    fn short_and_empty_secrets_are_ignored() {
        let red = Redactor::new(["".to_string(), "abc".to_string(), "ééé".to_string()]);
        assert_eq!(red.redact("abc ééé"), "abc ééé");
        let red = Redactor::new(["abcd".to_string()]);
        assert_eq!(red.redact("abcd"), "[redacted]");
    }

    #[test]
    fn overlapping_secrets_are_hidden_whole() {
        let red = Redactor::new(["abcd".to_string(), "abcdefgh".to_string()]);
        assert_eq!(red.redact("xabcdefghx abcd"), "x[redacted]x [redacted]");
    }

    #[test]
    fn log_line_redacts_then_flattens_and_truncates() {
        let red = Redactor::new(["the-app-secret".to_string()]);
        let line = red.log_line(&format!(
            "access_token=secret_token\n{}😀tail the-app-secret",
            "x".repeat(600)
        ));
        assert!(line.starts_with("access_token=[redacted] xxx"), "{line}");
        assert!(line.ends_with("..."));
        assert_eq!(line.chars().count(), MAX_LOG_CHARS);
        assert!(!line.contains("secret_token"));
    }

    #[test]
    fn a_secret_at_the_cut_is_scrubbed_before_cutting() {
        let secret = "refsecret-DO-NOT-LOG-0123";
        let red = Redactor::new([secret.to_string()]);
        // Wherever the cut falls inside the secret, none of it survives.
        for pad in 470..500 {
            let text = format!("{}{secret} tail", "x".repeat(pad));
            let line = red.finish(&text);
            assert!(line.chars().count() <= MAX_LOG_CHARS, "{pad}");
            for n in MIN_SECRET_CHARS..=secret.len() {
                assert!(!line.contains(&secret[..n]), "{pad}: {line}");
            }
        }
        let line = red.finish(&format!("{}{secret} tail", "x".repeat(477)));
        assert!(line.ends_with("x[redacted] tail"), "{line}");
    }

    #[test]
    fn a_prefix_left_by_an_earlier_cut_is_hidden() {
        let secret = "Q7vR2mK9pL4sT8wY1zB3nC6dF0gH5jA-k2L8mN4pQ6rS0tU3vW5xY7zA9bC1dE3f";
        let red = Redactor::new([secret.to_string()]);
        // What an error keeps: cut at MAX_RAW_CHARS, 20 characters into the last copy of
        // the secret (30 × 64 + 1 + 56 = 1 977 characters precede it). The other copies
        // shrink as they are redacted, so that cut comes within the final 500.
        let raw = single_line(
            &format!("{} {}{secret}", secret.repeat(30), "y".repeat(56)),
            MAX_RAW_CHARS,
        );
        assert!(raw.ends_with("..."));
        let line = red.finish(&raw);
        assert!(line.chars().count() <= MAX_LOG_CHARS);
        for n in MIN_SECRET_CHARS..secret.len() {
            assert!(!line.contains(&secret[..n]), "{line}");
        }
        assert!(line.ends_with("yyyyyyy[redacted]..."), "{line}");
        assert!(line.starts_with("[redacted][redacted]"), "{line}");
        // a cut text ending in no secret is left as it was
        let plain = single_line(&"z".repeat(3000), MAX_RAW_CHARS);
        assert_eq!(red.finish(&plain), single_line(&plain, MAX_LOG_CHARS));
        // fewer than 4 characters of a secret at the cut are kept: they hide nothing
        assert_eq!(red.finish("abc Q7v..."), "abc Q7v...");
        assert_eq!(red.finish("abc Q7vR..."), "abc [redacted]...");
    }

    #[test]
    fn learned_values_are_hidden_without_their_key() {
        let red = Redactor::new(["app-secret-1".to_string()]);
        let msg = "access key AKEY0123456789abcdef is expired; invalid ticket TICKET-7a1c%2B0001";
        assert_eq!(red.redact(msg), msg, "unknown until learned");
        red.learn_url(
            "wss://h.example/ws/v2?device_id=d1&access_key=AKEY0123456789abcdef&service_id=1&ticket=TICKET-7a1c%2B0001",
        );
        assert_eq!(
            red.redact(msg),
            "access key [redacted] is expired; invalid ticket [redacted]"
        );
        // percent-decoded too, and the configured secret still
        assert_eq!(
            red.redact("ticket TICKET-7a1c+0001 app-secret-1"),
            "ticket [redacted] [redacted]"
        );
        // device_id and service_id are not secrets
        assert_eq!(red.redact("device d1"), "device d1");
        // only the most recent values are kept
        for i in 0..MAX_LEARNED {
            red.learn([format!("newer-value-{i}")]);
        }
        assert!(red.redact("AKEY0123456789abcdef").contains("AKEY"));
        assert_eq!(red.redact("newer-value-0"), "[redacted]");
        assert_eq!(red.redact("app-secret-1"), "[redacted]");
    }

    #[test]
    fn secret_query_values_are_the_secret_parameters() {
        assert_eq!(
            secret_query_values("wss://h/ws?device_id=d&access_key=a%2Fb&ticket=t1&x_token=q#f"),
            vec!["a%2Fb", "a/b", "t1", "q"]
        );
        assert!(secret_query_values("wss://h/ws").is_empty());
    }

    #[test]
    fn single_line_flattens_control_characters() {
        assert_eq!(
            single_line("  a\r\n\tb \u{7}\u{0} c\u{2028}d  ", 100),
            "a b c d"
        );
        assert_eq!(single_line("a  b", 100), "a b");
        assert_eq!(single_line("\n\n", 100), "");
        assert_eq!(single_line("abc", 3), "abc");
    }

    #[test]
    fn single_line_truncates_on_char_boundaries() {
        assert_eq!(single_line("abcdef", 5), "ab...");
        assert_eq!(single_line("😀😀😀😀😀😀", 5), "😀😀...");
        assert_eq!(single_line("ab cdef", 6), "ab...");
        assert_eq!(single_line("abcdef", 2), "..");
        assert_eq!(single_line("abcdef", 0), "");
        assert_eq!(single_line("é", usize::MAX), "é");
    }

    #[test]
    fn redact_url_hides_secret_params_and_keeps_the_rest() {
        assert_eq!(
            redact_url("wss://msg-frontier.feishu.cn/ws/v2?fpid=493&aid=552564&device_id=d1&access_key=ak1&service_id=33554678&ticket=t1"),
            "wss://msg-frontier.feishu.cn/ws/v2?fpid=493&aid=552564&device_id=d1&access_key=[redacted]&service_id=33554678&ticket=[redacted]"
        );
        assert_eq!(
            redact_url("https://u:pw@h.example/p?x_Token=1&api%5Fkey=2&mySecret=3&page=4&flag#access_token=5&s=6"),
            "https://u:[redacted]@h.example/p?x_Token=[redacted]&api%5Fkey=[redacted]&mySecret=[redacted]&page=4&flag#access_token=[redacted]&s=6"
        );
        assert_eq!(redact_url("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
    }

    #[test]
    fn redact_url_falls_back_to_patterns() {
        assert_eq!(
            redact_url("/ws?ticket=abc&x=1"),
            "/ws?ticket=[redacted]&x=1"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Text biased towards the scanner's interesting bytes, mixed with arbitrary Unicode.
    fn text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            any::<String>(),
            Just("token".to_string()),
            Just("Authorization".to_string()),
            Just("Bearer".to_string()),
            Just("://".to_string()),
            "[=:\"' \\\\@{}&\t\n]{1,3}",
            "[a-zA-Z_]{1,6}",
            "\\PC{1,4}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(10_000), ..ProptestConfig::default() })]

        #[test]
        fn redaction_never_panics(s in text(), secret in any::<String>()) {
            let red = Redactor::new([secret]);
            let _ = red.redact(&s);
            let _ = red.log_line(&s);
            let _ = redact_patterns(&s);
            let _ = redact_url(&s);
        }

        #[test]
        fn single_line_respects_the_limit(s in text(), max in 0usize..40) {
            let out = single_line(&s, max);
            prop_assert!(out.chars().count() <= max);
            prop_assert!(!out.chars().any(|c| c.is_control()));
            prop_assert!(!out.contains("  "));
            prop_assert_eq!(out.trim(), out.as_str());
            let whole = single_line(&s, usize::MAX);
            if whole.chars().count() <= max {
                prop_assert_eq!(out, whole);
            } else if max >= 3 {
                prop_assert!(out.ends_with("..."));
                let kept = out.trim_end_matches('.').trim_end();
                prop_assert!(whole.starts_with(kept));
            }
        }

        #[test]
        fn an_inserted_secret_never_survives(
            before in text(),
            after in text(),
            secret in "[A-Za-z0-9_+/=-]{4,40}",
            max in 0usize..200,
        ) {
            // a secret inside the marker itself cannot be hidden by any marker
            prop_assume!(!REDACTED.contains(secret.as_str()));
            let s = format!("{before}{secret}{after}");
            let red = Redactor::new([secret.clone()]);
            prop_assert!(!red.redact(&s).contains(&secret));
            prop_assert!(!red.log_line(&s).contains(&secret));
            prop_assert!(!single_line(&red.redact(&s), max).contains(&secret));
        }

        #[test]
        fn a_value_behind_a_secret_key_never_survives(
            before in text(),
            key in prop_oneof![
                Just("access_token"), Just("appSecret"), Just("ticket"), Just("password"),
                Just("client_assertion"), Just("refresh_token"),
            ],
            form in 0usize..4,
            value in "[A-Za-z0-9_.+/-]{12,40}",
            after in text(),
        ) {
            let pair = match form {
                0 => format!("{key}={value}"),
                1 => format!("\"{key}\":\"{value}\""),
                2 => format!("{key}: {value}"),
                _ => format!("Bearer {value}"),
            };
            // A separator keeps the surrounding text from gluing onto the key or value.
            let s = format!("{before}\n{pair}\n{after}");
            prop_assert!(!redact_patterns(&s).contains(&value), "{}", redact_patterns(&s));
        }
    }
}
