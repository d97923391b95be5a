//! The dispatch fields of an event envelope (`event_type`, `event_id`), read in one
//! validating pass over the payload.
//!
//! Every event goes through here before its handler runs. It used to be serde derive over
//! serde_json, whose generic machinery (visitors, `IgnoredAny`, a second parse of `event`)
//! showed up in profiles of the client, so this is a small hand-written scanner instead. It reads the top-level keys, descends into `header` and into `event`
//! (one level, for a v1 `type`), and steps over everything else with a skip that checks
//! the JSON as it goes.
//!
//! Validity is the point as much as the fields: the caller splices the payload verbatim
//! into a larger JSON text for JavaScript's `JSON.parse`, so anything accepted here that
//! `JSON.parse` would reject would break a whole batch. The rules are serde_json's
//! (`from_str::<IgnoredAny>`), which are RFC 8259's: the four whitespace bytes, no control
//! bytes in strings, only the nine escapes with four hex digits for `\u`, the number
//! grammar (no leading zeros, `+`, bare `.` or `e`), no trailing commas or characters.
//! Like serde_json's `ignore_value` (and V8's `JSON.parse`) there is no nesting limit:
//! the skip is iterative and keeps the open brackets as bits, so depth costs a bit each
//! and never stack.
//!
//! What serde derive added on top, and this keeps: a duplicate top-level `header`, `uuid`
//! or `event`, or a duplicate `event_type`/`event_id` in `header`, is an error; `header`
//! must be an object or null, its two fields strings or null; a string that is decoded
//! (keys of the envelope and of `header`, `uuid`, the header fields) must not hold a lone
//! surrogate escape (`"\ud800"`), which a Rust string cannot hold. Strings that are only
//! skipped may, as in `IgnoredAny` and `JSON.parse`. The v1 `event.type` came from a
//! second, fallible parse whose failure just meant "no type": so here too, a duplicate
//! `type` or an undecodable key or `type` in `event` gives no type rather than an error.
//!
//! Where this differs from the derive (on purpose; the derive's behaviour came from
//! serde's data model, not from any wish): a top-level array is refused (the derive read
//! `[header, uuid, event]` as the struct), `header` as an array is refused (it was read as
//! `[event_type, event_id]`), `event` as an array has no type (it was read as `[type]`),
//! and a `uuid` that is not a string is skipped like any other value, where the derive
//! parsed it into a `serde_json::Value` and so refused numbers beyond `f64`, lone
//! surrogates in nested strings and more than 126 levels of nesting inside it, all of
//! which `IgnoredAny` and `JSON.parse` accept.

use std::borrow::Cow;
use std::fmt;

/// The envelope fields the transport itself needs (dedupe key, event type).
/// Borrowed from the payload unless a value holds escapes (ids and types never do in
/// practice), so reading them allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeMeta<'a> {
    /// `header.event_type` (v2), else the string `event.type` (v1).
    pub event_type: Option<Cow<'a, str>>,
    /// `header.event_id` (v2) or the string `uuid` (v1, when there is no `header`); an
    /// empty one is `None`.
    pub event_id: Option<Cow<'a, str>>,
}

/// Why a payload was refused: what, and at which byte. Never any of the payload itself,
/// which can hold secrets and ends up in a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeError {
    what: &'static str,
    at: usize,
}

impl EnvelopeError {
    /// The byte offset in the payload where the problem was found.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for EnvelopeError {}

/// Reads the dispatch fields of one event payload, which must be exactly one JSON object
/// (surrounding whitespace allowed). See the module docs for every rule.
pub fn envelope_meta(payload: &str) -> Result<EnvelopeMeta<'_>, EnvelopeError> {
    let p = Payload {
        text: payload,
        b: payload.as_bytes(),
    };
    // Outer `None`: not seen yet (so a second one is a duplicate); inner: its value.
    let mut header: Option<Option<Header<'_>>> = None;
    let mut uuid: Option<Option<Cow<'_, str>>> = None;
    let mut event: Option<Option<Span>> = None;

    let mut i = p.ws(0);
    if p.at(i) != b'{' {
        return Err(p.fail("expected '{'", i));
    }
    i = p.members(i + 1, |i, name, key| match name {
        "header" => {
            p.once(&header, "duplicate field `header`", key)?;
            let (i, h) = p.header(i)?;
            header = Some(h);
            Ok(i)
        }
        "uuid" => {
            p.once(&uuid, "duplicate field `uuid`", key)?;
            let i = p.ws(i);
            if p.at(i) == b'"' {
                let (i, s) = p.decoded_string(i)?;
                uuid = Some(Some(s));
                Ok(i)
            } else {
                uuid = Some(None);
                p.skip_value(i)
            }
        }
        "event" => {
            p.once(&event, "duplicate field `event`", key)?;
            let (i, e) = p.event(i)?;
            event = Some(e);
            Ok(i)
        }
        _ => p.skip_value(i),
    })?;
    i = p.ws(i);
    if i < p.b.len() {
        return Err(p.fail("trailing characters after the JSON object", i));
    }

    // The v1 type is decoded only when it is the answer; one that cannot be decoded was a
    // failed second parse in the derive version, i.e. no type.
    let v1_type = || event.flatten().and_then(|span| p.decode(span).ok());
    let (event_type, event_id) = match header.flatten() {
        Some(h) => (h.event_type.or_else(v1_type), h.event_id),
        None => (v1_type(), uuid.flatten()),
    };
    Ok(EnvelopeMeta {
        event_type,
        event_id: event_id.filter(|id| !id.is_empty()),
    })
}

const LONE_SURROGATE: &str = "a string to decode has a lone surrogate escape";

/// The two header fields; `None` for absent or null.
struct Header<'a> {
    event_type: Option<Cow<'a, str>>,
    event_id: Option<Cow<'a, str>>,
}

/// A string's body (between its quotes, as byte offsets), and whether it has a backslash:
/// without one the body is the value, so most strings are never copied or decoded.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

impl Span {
    /// Where the string's opening quote is, for errors about it.
    fn quote(self) -> usize {
        self.start - 1
    }
}

/// The payload, read by steps that each take the index they start at and return the
/// index after what they read (with what they found). The index is a plain local of each
/// caller rather than a field behind `&mut self`, so the compiler keeps it in a register
/// (as a field it was stored back to memory on every step).
#[derive(Clone, Copy)]
struct Payload<'a> {
    text: &'a str,
    b: &'a [u8],
}

type Step<T> = Result<T, EnvelopeError>;

impl<'a> Payload<'a> {
    /// The byte at `i`, or 0 past the end: 0 is never valid outside a string, so each
    /// caller's "anything else" branch also handles the end.
    #[inline(always)]
    fn at(self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// An error at byte `at`; at (or past) the end of the payload, whatever was expected,
    /// the payload was cut short.
    #[cold]
    fn fail(self, what: &'static str, at: usize) -> EnvelopeError {
        if at >= self.b.len() {
            EnvelopeError {
                what: "the payload ends early",
                at: self.b.len(),
            }
        } else {
            EnvelopeError { what, at }
        }
    }

    /// The index of the first byte at or after `i` that is not JSON whitespace (exactly
    /// serde_json's and RFC 8259's four bytes). A byte at a time: the branches predict
    /// well, and a word-at-a-time search (each step waiting on its load) measured slower,
    /// even on a pretty-printed payload.
    #[inline(always)]
    fn ws(self, mut i: usize) -> usize {
        loop {
            match self.b.get(i) {
                // Compact JSON (what Feishu and the emulator send) has none: one compare.
                Some(&c) if c > b' ' => return i,
                Some(b' ' | b'\n' | b'\t' | b'\r') => i += 1,
                _ => return i,
            }
        }
    }

    /// After an object member: `,` (true: another member follows) or the closing `}`
    /// (false).
    #[inline(always)]
    fn after_member(self, i: usize) -> Step<(usize, bool)> {
        let i = self.ws(i);
        match self.at(i) {
            b',' => Ok((i + 1, true)),
            b'}' => Ok((i + 1, false)),
            _ => Err(self.fail("expected ',' or '}' in an object", i)),
        }
    }

    /// The members of an object whose `{` is just before `i`, for the objects whose keys
    /// must decode (the envelope and its `header`): `member(i, name, key)` reads the
    /// value that starts at `i` (after the colon) and returns the index after it. Returns
    /// the index after the closing `}`.
    #[inline(always)]
    fn members(
        self,
        i: usize,
        mut member: impl FnMut(usize, &str, Span) -> Step<usize>,
    ) -> Step<usize> {
        let mut i = self.ws(i);
        if self.at(i) == b'}' {
            return Ok(i + 1);
        }
        loop {
            let key;
            (i, key) = self.key_colon(i)?;
            let name = self
                .decode(key)
                .map_err(|()| self.fail(LONE_SURROGATE, key.quote()))?;
            i = member(i, &name, key)?;
            let more;
            (i, more) = self.after_member(i)?;
            if !more {
                return Ok(i);
            }
        }
    }

    /// Fails with `duplicate` (at `key`) when `seen` already holds the member's value.
    #[inline(always)]
    fn once<T>(self, seen: &Option<T>, duplicate: &'static str, key: Span) -> Step<()> {
        match seen {
            Some(_) => Err(self.fail(duplicate, key.quote())),
            None => Ok(()),
        }
    }

    /// An object key (after optional whitespace) and the colon after it.
    #[inline(always)]
    fn key_colon(self, i: usize) -> Step<(usize, Span)> {
        let i = self.ws(i);
        if self.at(i) != b'"' {
            return Err(self.fail("expected a string key", i));
        }
        let (i, key) = self.string(i)?;
        let i = self.ws(i);
        if self.at(i) != b':' {
            return Err(self.fail("expected ':' after a key", i));
        }
        Ok((i + 1, key))
    }

    /// A string's text (a value, or a key to compare with the names this module looks
    /// for), as serde_json decodes a Rust string: borrowed when plain, as nearly every
    /// one is; decoded when it has escapes, since `"head\u0065r"` is still `header` to
    /// any JSON reader. `Err(())` only for a lone surrogate escape: the scan already
    /// checked everything else.
    #[inline(always)]
    fn decode(self, s: Span) -> Result<Cow<'a, str>, ()> {
        // Quotes are ASCII, so the span's ends are char boundaries.
        let raw = &self.text[s.start..s.end];
        if s.escaped {
            unescape(raw).map(Cow::Owned).ok_or(())
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    /// The string whose opening quote is at `i`, decoded; a lone surrogate is refused,
    /// as serde_json does for a Rust string.
    fn decoded_string(self, i: usize) -> Step<(usize, Cow<'a, str>)> {
        let (end, span) = self.string(i)?;
        let text = self
            .decode(span)
            .map_err(|()| self.fail(LONE_SURROGATE, i))?;
        Ok((end, text))
    }

    /// Scans the string whose opening quote is at `i`, checking it; returns the index
    /// after its closing quote, and its body. Most of a payload's bytes are in strings
    /// (the message `content` is itself a JSON text in one), so the plain runs of the
    /// body are searched many bytes a step by [`find_special`].
    #[inline(always)]
    fn string(self, i: usize) -> Step<(usize, Span)> {
        let start = i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = find_special(self.b, i);
            match self.at(i) {
                b'"' => {
                    let span = Span {
                        start,
                        end: i,
                        escaped,
                    };
                    return Ok((i + 1, span));
                }
                b'\\' => {
                    escaped = true;
                    // The one-letter escapes inline: JSON-in-JSON (a message `content`)
                    // is full of `\"`.
                    i = match self.at(i + 1) {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i + 2,
                        _ => self.escape(i)?,
                    };
                }
                _ => return Err(self.fail("control character in a string", i)),
            }
        }
    }

    /// Checks a `\uXXXX` escape (or an invalid one) whose backslash is at `i` and returns
    /// the index after it. Any `\uXXXX` is fine here, even a lone surrogate: serde_json's
    /// `IgnoredAny` and `JSON.parse` accept those in strings they do not decode. Only
    /// [`unescape`] refuses them.
    #[cold]
    fn escape(self, i: usize) -> Step<usize> {
        if self.at(i + 1) != b'u' {
            return Err(self.fail("invalid escape", i));
        }
        match self.b.get(i + 2..i + 6) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(i + 6),
            Some(_) => Err(self.fail("invalid \\u escape", i)),
            None => Err(self.fail("the payload ends early", self.b.len())),
        }
    }

    /// Steps over the number at `i`, checking RFC 8259's grammar exactly as serde_json's
    /// `ignore_number` does (its value is never needed).
    fn number(self, mut i: usize) -> Step<usize> {
        if self.at(i) == b'-' {
            i += 1;
        }
        match self.at(i) {
            // One leading zero only: "01" is not JSON.
            b'0' => {
                i += 1;
                if self.at(i).is_ascii_digit() {
                    return Err(self.fail("invalid number", i));
                }
            }
            b'1'..=b'9' => i = self.digits(i + 1),
            _ => return Err(self.fail("invalid number", i)),
        }
        if self.at(i) == b'.' {
            i += 1;
            if !self.at(i).is_ascii_digit() {
                return Err(self.fail("invalid number", i));
            }
            i = self.digits(i);
        }
        if matches!(self.at(i), b'e' | b'E') {
            i += 1;
            if matches!(self.at(i), b'+' | b'-') {
                i += 1;
            }
            if !self.at(i).is_ascii_digit() {
                return Err(self.fail("invalid number", i));
            }
            i = self.digits(i);
        }
        Ok(i)
    }

    #[inline(always)]
    fn digits(self, mut i: usize) -> usize {
        while self.at(i).is_ascii_digit() {
            i += 1;
        }
        i
    }

    fn literal(self, i: usize, word: &'static [u8]) -> Step<usize> {
        if self.b[i..].starts_with(word) {
            Ok(i + word.len())
        } else {
            Err(self.fail("invalid literal", i))
        }
    }

    /// Steps over one value (after optional whitespace), checking it as strictly as
    /// serde_json does.
    #[inline(always)]
    fn skip_value(self, i: usize) -> Step<usize> {
        let i = self.ws(i);
        // Most skipped values are strings: those skip the container machinery.
        if self.at(i) == b'"' {
            Ok(self.string(i)?.0)
        } else {
            self.skip_any(i)
        }
    }

    /// [`Payload::skip_value`] for any value, nested or not, at `i` (no whitespace).
    /// Iterative rather than recursive, with the open brackets kept as bits: serde_json's
    /// `ignore_value` has no depth limit (it keeps its own stack), so matching it means a
    /// payload can nest as deep as its length allows, which a recursive skip could not
    /// survive.
    #[inline(never)]
    fn skip_any(self, mut i: usize) -> Step<usize> {
        let mut open = Nesting::default();
        loop {
            // A value is due at `i`.
            i = self.ws(i);
            match self.at(i) {
                b'"' => i = self.string(i)?.0,
                b'{' => {
                    i = self.ws(i + 1);
                    if self.at(i) == b'}' {
                        i += 1;
                    } else {
                        open.push(true);
                        i = self.key_colon(i)?.0;
                        continue;
                    }
                }
                b'[' => {
                    i = self.ws(i + 1);
                    if self.at(i) == b']' {
                        i += 1;
                    } else {
                        open.push(false);
                        continue;
                    }
                }
                b'-' | b'0'..=b'9' => i = self.number(i)?,
                b't' => i = self.literal(i, b"true")?,
                b'f' => i = self.literal(i, b"false")?,
                b'n' => i = self.literal(i, b"null")?,
                _ => return Err(self.fail("expected a value", i)),
            }
            // A value ended: close the containers it ends, up to where the next is due.
            loop {
                let Some(in_object) = open.top() else {
                    return Ok(i);
                };
                i = self.ws(i);
                match self.at(i) {
                    b',' => {
                        i += 1;
                        if in_object {
                            i = self.key_colon(i)?.0;
                        }
                        break;
                    }
                    b'}' if in_object => {
                        i += 1;
                        open.pop();
                    }
                    b']' if !in_object => {
                        i += 1;
                        open.pop();
                    }
                    _ if in_object => return Err(self.fail("expected ',' or '}' in an object", i)),
                    _ => return Err(self.fail("expected ',' or ']' in an array", i)),
                }
            }
        }
    }

    /// `header`: null (no header), or an object whose `event_type` and `event_id` are
    /// strings or null, each at most once. Other members are skipped.
    fn header(self, i: usize) -> Step<(usize, Option<Header<'a>>)> {
        let mut i = self.ws(i);
        match self.at(i) {
            b'n' => return Ok((self.literal(i, b"null")?, None)),
            b'{' => i += 1,
            _ => return Err(self.fail("`header` is not an object", i)),
        }
        let mut event_type: Option<Option<Cow<'a, str>>> = None;
        let mut event_id: Option<Option<Cow<'a, str>>> = None;
        i = self.members(i, |i, name, key| match name {
            "event_type" => {
                self.once(&event_type, "duplicate field `header.event_type`", key)?;
                let (i, v) = self.string_or_null(i, "`header.event_type` is not a string")?;
                event_type = Some(v);
                Ok(i)
            }
            "event_id" => {
                self.once(&event_id, "duplicate field `header.event_id`", key)?;
                let (i, v) = self.string_or_null(i, "`header.event_id` is not a string")?;
                event_id = Some(v);
                Ok(i)
            }
            _ => self.skip_value(i),
        })?;
        let header = Header {
            event_type: event_type.flatten(),
            event_id: event_id.flatten(),
        };
        Ok((i, Some(header)))
    }

    fn string_or_null(
        self,
        i: usize,
        not_a_string: &'static str,
    ) -> Step<(usize, Option<Cow<'a, str>>)> {
        let i = self.ws(i);
        match self.at(i) {
            b'"' => self.decoded_string(i).map(|(i, s)| (i, Some(s))),
            b'n' => Ok((self.literal(i, b"null")?, None)),
            _ => Err(self.fail(not_a_string, i)),
        }
    }

    /// `event`, which may be any value; returns the span of its `type` when it is an
    /// object with one string `type` (decoded later, only if the envelope has no
    /// `header.event_type`). A duplicate `type` or a key that cannot be decoded gives no
    /// type, not an error, as the derive version's second parse of `event` did.
    fn event(self, i: usize) -> Step<(usize, Option<Span>)> {
        let mut i = self.ws(i);
        if self.at(i) != b'{' {
            return Ok((self.skip_any(i)?, None));
        }
        i = self.ws(i + 1);
        if self.at(i) == b'}' {
            return Ok((i + 1, None));
        }
        // Outer `None`: no `type` yet; inner: its span when it is a string.
        let mut kind: Option<Option<Span>> = None;
        let mut spoilt = false;
        loop {
            let key;
            (i, key) = self.key_colon(i)?;
            match self.decode(key).as_deref() {
                Ok("type") => {
                    spoilt |= kind.is_some();
                    i = self.ws(i);
                    kind = Some(if self.at(i) == b'"' {
                        let span;
                        (i, span) = self.string(i)?;
                        Some(span)
                    } else {
                        i = self.skip_any(i)?;
                        None
                    });
                }
                Ok(_) => i = self.skip_value(i)?,
                Err(_) => {
                    spoilt = true;
                    i = self.skip_value(i)?;
                }
            }
            let more;
            (i, more) = self.after_member(i)?;
            if !more {
                break;
            }
        }
        Ok((i, if spoilt { None } else { kind.flatten() }))
    }
}

/// The index of the first `"`, `\` or control byte (below 0x20) at or after `i`, or
/// `b.len()`: where a string's plain run ends.
///
/// Eight bytes a step (see [`special_bytes`]) for the first 32, which covers the keys and
/// ids that make up most strings; past that, [`find_special_long`]. Measured against a
/// byte loop (its exits mispredict on strings of varying length) and against 16-byte
/// steps from the start (slower on short strings), this was fastest on real payloads.
#[inline(always)]
fn find_special(b: &[u8], mut i: usize) -> usize {
    let stop = i + 32;
    while let Some(word) = b.get(i..i + 8) {
        match special_bytes(u64::from_le_bytes(word.try_into().unwrap())) {
            0 => i += 8,
            hits => return i + (hits.trailing_zeros() / 8) as usize,
        }
        if i == stop {
            return find_special_long(b, i);
        }
    }
    special_tail(b, i)
}

/// [`find_special`] in a long run, like the message `content`: 16 bytes a step, asking
/// only whether they hold a special byte, in a loop simple enough for the compiler to
/// vectorize (SSE2 / NEON compares) while staying safe Rust; then eight bytes a step to
/// find it. Out of line, as it is rarely needed and would only bloat its callers.
#[inline(never)]
fn find_special_long(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 16) {
        let mut any = false;
        for &c in chunk {
            any |= (c == b'"') | (c == b'\\') | (c < 0x20);
        }
        if any {
            break;
        }
        i += 16;
    }
    while let Some(word) = b.get(i..i + 8) {
        match special_bytes(u64::from_le_bytes(word.try_into().unwrap())) {
            0 => i += 8,
            hits => return i + (hits.trailing_zeros() / 8) as usize,
        }
    }
    special_tail(b, i)
}

/// [`find_special`] in the last few (under eight) bytes of the payload.
#[cold]
fn special_tail(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Bit 7 of each byte of `w` (eight bytes, little-endian) that may be a `"`, `\` or
/// control byte; the lowest set bit is always a true one. The "has a zero byte" trick:
/// `(x - 0x01..) & !x & 0x80..` flags the zero bytes of `x`; it is applied to the word
/// xor'ed with `"` and with `\`, and (as `(w - 0x20..) & !w`) to the word itself for
/// bytes below 0x20. The xors leave bit 7 alone, so one `!w` serves all three. Borrows
/// can flag false bytes, but only above a true one.
#[inline(always)]
fn special_bytes(w: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let quote = w ^ (ONES * b'"' as u64);
    let backslash = w ^ (ONES * b'\\' as u64);
    (quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES) | w.wrapping_sub(ONES * 0x20))
        & !w
        & HIGH
}

/// Decodes the body of a string the scan has already checked, as serde_json decodes a
/// Rust string: the usual escapes, and UTF-16 surrogates only as a high-low `\u` pair.
/// `None` for a lone surrogate, which a Rust string cannot hold.
#[cold]
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let b = &rest.as_bytes()[at..];
        let (c, used) = match *b.get(1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let hi = hex4(b.get(2..6)?)?;
                match hi {
                    0xD800..=0xDBFF => {
                        if b.get(6..8)? != b"\\u" {
                            return None;
                        }
                        let lo = hex4(b.get(8..12)?)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return None;
                        }
                        (
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?,
                            12,
                        )
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => (char::from_u32(hi)?, 6),
                }
            }
            _ => return None,
        };
        out.push(c);
        // Escapes are ASCII, so this is a char boundary.
        rest = &rest[at + used..];
    }
    out.push_str(rest);
    Some(out)
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter()
        .try_fold(0, |n, &c| Some(n << 4 | (c as char).to_digit(16)?))
}

/// The open brackets of [`Payload::skip_any`], one bit each (set for an object): 64
/// levels inline, deeper ones in a vector that is only allocated for them.
#[derive(Default)]
struct Nesting {
    depth: usize,
    low: u64,
    deeper: Vec<u64>,
}

impl Nesting {
    #[inline]
    fn push(&mut self, object: bool) {
        let d = self.depth;
        let bit = 1u64 << (d % 64);
        let word = if d < 64 {
            &mut self.low
        } else {
            let w = d / 64 - 1;
            if w == self.deeper.len() {
                self.deeper.push(0);
            }
            &mut self.deeper[w]
        };
        if object {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        self.depth += 1;
    }

    /// Whether the innermost open bracket is an object's; `None` when none is open.
    #[inline]
    fn top(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        let word = if d < 64 {
            self.low
        } else {
            self.deeper[d / 64 - 1]
        };
        Some(word >> (d % 64) & 1 == 1)
    }

    #[inline]
    fn pop(&mut self) {
        self.depth -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(s: &str) -> (Option<String>, Option<String>) {
        let m = envelope_meta(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (
            m.event_type.map(Cow::into_owned),
            m.event_id.map(Cow::into_owned),
        )
    }

    fn some(t: &str, id: &str) -> (Option<String>, Option<String>) {
        (Some(t.into()), Some(id.into()))
    }

    /// Accepted exactly when serde_json's `IgnoredAny` accepts (for texts whose
    /// envelope fields are not at stake).
    fn same_validity_as_serde(s: &str) {
        let serde = serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok();
        assert_eq!(envelope_meta(s).is_ok(), serde, "{s:?}");
    }

    #[test]
    fn duplicate_fields_are_errors_as_with_serde_derive() {
        for s in [
            r#"{"header":{},"header":{}}"#,
            r#"{"header":null,"header":null}"#,
            r#"{"uuid":"a","uuid":"a"}"#,
            r#"{"uuid":1,"uuid":[]}"#,
            r#"{"event":{},"event":{}}"#,
            r#"{"event":null,"x":1,"event":3}"#,
            r#"{"header":{"event_type":"a","event_type":"a"}}"#,
            r#"{"header":{"event_type":null,"event_type":"a"}}"#,
            r#"{"header":{"event_id":"a","x":1,"event_id":null}}"#,
            r#"{"head\u0065r":{},"header":{}}"#,
            r#"{"header":{"event_id":"a","event\u005fid":"b"}}"#,
        ] {
            let e = envelope_meta(s).unwrap_err();
            assert!(e.to_string().starts_with("duplicate field"), "{s}: {e}");
        }
        // Other keys may repeat, at any level.
        assert_eq!(
            meta(r#"{"x":1,"x":2,"header":{"y":1,"y":2,"event_id":"e"}}"#),
            (None, Some("e".into()))
        );
    }

    #[test]
    fn header_must_be_an_object_or_null_with_string_or_null_fields() {
        for s in [
            r#"{"header":[]}"#,
            r#"{"header":["t","e"]}"#,
            r#"{"header":"h"}"#,
            r#"{"header":1}"#,
            r#"{"header":true}"#,
            r#"{"header":{"event_type":1}}"#,
            r#"{"header":{"event_type":{}}}"#,
            r#"{"header":{"event_id":[]}}"#,
            r#"{"header":{"event_id":false}}"#,
        ] {
            assert!(envelope_meta(s).is_err(), "{s}");
        }
        // null header: a v1 envelope.
        assert_eq!(
            meta(r#"{"header":null,"uuid":"u","event":{"type":"t"}}"#),
            some("t", "u")
        );
        // null fields are absent ones; no event_type falls back to `event.type`, but
        // `uuid` only counts without a header.
        assert_eq!(
            meta(
                r#"{"uuid":"u","header":{"event_type":null,"event_id":null},"event":{"type":"t"}}"#
            ),
            (Some("t".into()), None)
        );
        assert_eq!(
            meta(r#"{"event":{"type":"v1"},"header":{"event_type":"v2","event_id":"e"}}"#),
            some("v2", "e")
        );
    }

    #[test]
    fn uuid_may_be_anything_and_only_a_string_counts() {
        for s in [
            r#"{"uuid":null}"#,
            r#"{"uuid":7}"#,
            r#"{"uuid":{"a":"b"}}"#,
            r#"{"uuid":["u"]}"#,
            r#"{"uuid":""}"#,
            r#"{"header":{"event_id":""},"uuid":"u"}"#,
        ] {
            assert_eq!(meta(s), (None, None), "{s}");
        }
        assert_eq!(meta(r#"{"uuid":"u"}"#), (None, Some("u".into())));
    }

    #[test]
    fn only_an_objects_single_string_type_names_a_v1_event() {
        for s in [
            r#"{"event":null}"#,
            r#"{"event":"t"}"#,
            r#"{"event":["t"]}"#,
            r#"{"event":{}}"#,
            r#"{"event":{"type":null}}"#,
            r#"{"event":{"type":7}}"#,
            r#"{"event":{"type":{"type":"t"}}}"#,
            r#"{"event":{"x":{"type":"t"}}}"#,
            // The derive version parsed `event` a second time and a failure meant no
            // type: a duplicate `type`, or a key or `type` it could not decode.
            r#"{"event":{"type":"t","type":"t"}}"#,
            r#"{"event":{"type":"t","\u0074ype":null}}"#,
            r#"{"event":{"type":"\ud800"}}"#,
            r#"{"event":{"type":"t","x\udc00":1}}"#,
        ] {
            assert_eq!(meta(s), (None, None), "{s}");
        }
        assert_eq!(
            meta(r#"{"event":{"a":[{"type":"x"}],"\u0074ype":"t\u00e9","b":{}}}"#).0,
            Some("t\u{e9}".into())
        );
    }

    #[test]
    fn escapes_are_decoded_as_serde_does() {
        assert_eq!(
            meta(
                r#"{"head\u0065r":{"event\u005ftype":"a\"b\\c\/d\b\f\n\r\t","event_id":"\u00e9\uD83D\uDE00"}}"#
            ),
            some("a\"b\\c/d\u{8}\u{c}\n\r\t", "\u{e9}\u{1f600}")
        );
        assert_eq!(meta(r#"{"uuid":"\u0000"}"#), (None, Some("\0".into())));
    }

    #[test]
    fn lone_surrogates_only_fail_strings_that_are_decoded() {
        // Decoded: keys of the envelope and of the header, uuid, the header fields.
        for s in [
            r#"{"\ud800":1}"#,
            r#"{"header":{"\udc00":1}}"#,
            r#"{"uuid":"\ud800"}"#,
            r#"{"header":{"event_id":"\ud800\u0041"}}"#,
            r#"{"header":{"event_type":"\ud800\ud800"}}"#,
            r#"{"header":{"event_type":"\ud800\n"}}"#,
            r#"{"header":{"event_type":"\udfff\udbff"}}"#,
        ] {
            let e = envelope_meta(s).unwrap_err();
            assert!(e.to_string().contains("lone surrogate"), "{s}: {e}");
        }
        // Skipped: anywhere else, as in `IgnoredAny` and `JSON.parse`.
        for s in [
            r#"{"x":"\ud800"}"#,
            r#"{"x":{"\udc00":"\ud800\ud800"}}"#,
            r#"{"uuid":["\ud800"]}"#,
            r#"{"header":{"x":"\ud800"}}"#,
            r#"{"event":{"x":"\ud800"}}"#,
        ] {
            assert_eq!(meta(s), (None, None), "{s}");
        }
    }

    #[test]
    fn validity_is_serde_jsons() {
        let bad = [
            "",
            " ",
            "nope",
            "{",
            "}",
            "{}}",
            "{} {}",
            "{}x",
            "{}\0",
            "\u{feff}{}",
            "{\u{b}}",
            "{\u{a0}}",
            "{,}",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":{1:2}}"#,
            r#"{'a':1}"#,
            r#"{"a":[}"#,
            r#"{"a":{]}"#,
            r#"{"a":[[]}"#,
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\u{1f}\"}",
            "{\"a\":\"\n\"}",
            "{\"a\u{0}\":1}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\'"}"#,
            r#"{"a":"\U0041"}"#,
            r#"{"a":"\u004"}"#,
            r#"{"a":"\u00g0"}"#,
            r#"{"a":"\u+041"}"#,
            r#"{"a":"\"#,
            r#"{"a":"abc"#,
            r#"{"a":01}"#,
            r#"{"a":-01}"#,
            r#"{"a":00}"#,
            r#"{"a":+1}"#,
            r#"{"a":-}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1.e5}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"{"a":1E-}"#,
            r#"{"a":0x10}"#,
            r#"{"a":NaN}"#,
            r#"{"a":Infinity}"#,
            r#"{"a":-Infinity}"#,
            r#"{"a":tru}"#,
            r#"{"a":True}"#,
            r#"{"a":nul}"#,
            r#"{"a":nulll}"#,
            r#"{"a":undefined}"#,
        ];
        for s in bad {
            same_validity_as_serde(s);
            assert!(envelope_meta(s).is_err(), "{s:?}");
        }
        // Valid JSON, but not an object.
        for s in ["[]", "[1]", "[null,null,null]", "\"{}\"", "1", "null"] {
            assert!(envelope_meta(s).is_err(), "{s:?}");
        }
        let good = [
            "{}",
            " \t\r\n{ \t\r\n} \t\r\n",
            r#"{"a":0,"b":-0,"c":-0.0e-0,"d":1E+2,"e":2.5e-3,"f":1e400,"g":123456789012345678901234567890}"#,
            r#"{"a":[true,false,null,[],{},[[{}]],"",{"":""}]}"#,
            "{\"a\":\"\u{7f}\u{80}\u{e9}\u{1f600}\"}",
            r#"{"a":"\"\\\/\b\f\n\r\t\u0000\u001F\uFFFF\uabcd"}"#,
            r#"{"a":"\ud800","b":"\udc00\ud800"}"#,
        ];
        for s in good {
            same_validity_as_serde(s);
        }
    }

    #[test]
    fn nesting_has_no_limit_like_serde_jsons_ignore_value() {
        // serde_json's recursion limit (128) is for what it deserializes recursively;
        // `IgnoredAny` (and so the old derive's skipped fields) had none, nor does V8.
        for depth in [63, 64, 65, 127, 128, 129, 200, 10_000] {
            let arrays = format!(r#"{{"x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
            same_validity_as_serde(&arrays);
            assert!(envelope_meta(&arrays).is_ok(), "{depth}");
            // Alternating, so every bit of the stack matters when it unwinds.
            let open: String = (0..depth)
                .map(|n| if n % 3 == 0 { r#"{"k":"# } else { "[" })
                .collect();
            let close: String = (0..depth)
                .rev()
                .map(|n| if n % 3 == 0 { "}" } else { "]" })
                .collect();
            let mixed = format!(r#"{{"event":{open}1{close},"uuid":"u"}}"#);
            same_validity_as_serde(&mixed);
            assert_eq!(meta(&mixed), (None, Some("u".into())));
            // One wrong bracket at any depth is an error.
            for wrong in [0, depth / 2, depth - 1] {
                let mut bytes = mixed.clone().into_bytes();
                let at = mixed.len() - r#","uuid":"u"}"#.len() - 1 - wrong;
                assert!(matches!(bytes[at], b']' | b'}'));
                bytes[at] = if bytes[at] == b']' { b'}' } else { b']' };
                let bad = String::from_utf8(bytes).unwrap();
                same_validity_as_serde(&bad);
                assert!(envelope_meta(&bad).is_err(), "{depth} {wrong}");
            }
        }
    }

    #[test]
    fn errors_give_an_offset_and_no_content() {
        let s = r#"{"header":{"token":"s3cret","event_type":7}}"#;
        let e = envelope_meta(s).unwrap_err();
        assert_eq!(e.offset(), s.find('7').unwrap());
        assert_eq!(
            e.to_string(),
            format!("`header.event_type` is not a string at byte {}", e.offset())
        );
        let e = envelope_meta(r#"{"token":"s3cret"#).unwrap_err();
        assert_eq!(e.to_string(), "the payload ends early at byte 16");
        let e = envelope_meta("{\"x\":\"s3cret\u{1}\"}").unwrap_err();
        assert_eq!(e.offset(), 12);
        assert!(!e.to_string().contains("s3cret"));
    }

    #[test]
    fn find_special_agrees_with_a_plain_loop() {
        let plain = |b: &[u8], i: usize| {
            (i..b.len())
                .find(|&j| matches!(b[j], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(b.len())
        };
        // The bytes that matter, and their neighbours (borrows, bit 7), at every offset of
        // the eight- and sixteen-byte steps, past the 32 where the long search takes over,
        // and in the short tail; after plain bytes of both halves of the byte range.
        let mut bytes: Vec<u8> = (0..=0x23).collect();
        bytes.extend([0x5b, 0x5c, 0x5d, 0x61, 0x7f, 0x80, 0xa2, 0xdc, 0xff]);
        for filler in [b'a', 0x7f, 0x80, 0xff, 0x20] {
            for len in (0..24).chain([47, 48, 49, 63, 64, 65, 80]) {
                for at in 0..len {
                    for &c in &bytes {
                        let mut b = vec![filler; len];
                        b[at] = c;
                        for start in [0, 1, 3, 9] {
                            let start = start.min(len);
                            assert_eq!(
                                find_special(&b, start),
                                plain(&b, start),
                                "{b:?} from {start}"
                            );
                        }
                    }
                }
            }
        }
    }
}
