//! Property tests of `envelope_meta`, the hand-written envelope scanner, against the
//! serde-derive implementation it replaced: on generated envelopes, arbitrary JSON, deep
//! nesting and byte-level corruptions of them all, it accepts exactly what the reference
//! accepts and extracts the same fields; and it never accepts what serde_json's
//! `IgnoredAny` (i.e. RFC 8259) rejects, since the payload is spliced into a text that
//! `JSON.parse` reads.
//!
//! The reference is the old implementation with its four intended departures marked
//! `CHANGED`; the verbatim old implementation is kept too, and every input where the two
//! differ must be one of those departures (`departure`).
//!
//! Case counts default high because each case costs microseconds; set `PROPTEST_CASES`
//! to change them.

use std::collections::BTreeMap;

use feishu_transport::core::events::envelope_meta;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Meta = (Option<String>, Option<String>);

/// The envelope's `header` as the serde-derive reader took it (both readers below).
#[derive(Deserialize)]
struct Header {
    event_type: Option<String>,
    event_id: Option<String>,
}

/// A v1 `event`, for its `type` (both readers below).
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
}

/// The implementation before the scanner, copied verbatim (only the return type is
/// flattened to a pair and the error to a string; `Header` and `Event` are shared).
fn old_envelope_meta(payload: &str) -> Result<Meta, String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        header: Option<Header>,
        uuid: Option<serde_json::Value>,
        #[serde(borrow)]
        event: Option<&'a serde_json::value::RawValue>,
    }
    let env: Envelope<'_> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    let v1_type = || {
        let ev: Event = serde_json::from_str(env.event?.get()).ok()?;
        ev.kind?.as_str().map(str::to_string)
    };
    let (event_type, event_id) = match &env.header {
        Some(h) => (h.event_type.clone().or_else(v1_type), h.event_id.clone()),
        None => (
            v1_type(),
            env.uuid
                .as_ref()
                .and_then(|u| u.as_str())
                .map(str::to_string),
        ),
    };
    Ok((event_type, event_id.filter(|s| !s.is_empty())))
}

/// The oracle: the old implementation with the departures the scanner makes on purpose,
/// each marked `CHANGED`. Everything else (duplicate fields, header field types, lone
/// surrogates in decoded strings, the second parse of `event` failing quietly) is the
/// old code as it was.
fn reference(payload: &str) -> Result<Meta, String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        // CHANGED (2): kept raw so that only an object (or null) is read as the header;
        // serde's derive also read an array `[event_type, event_id]` as the struct.
        #[serde(borrow)]
        header: Option<&'a RawValue>,
        // CHANGED (4): kept raw: a string is decoded, anything else skipped like any
        // value, where a `serde_json::Value` refused numbers beyond f64, lone surrogates
        // in nested strings and deep nesting.
        #[serde(borrow)]
        uuid: Option<&'a RawValue>,
        #[serde(borrow)]
        event: Option<&'a RawValue>,
    }
    // CHANGED (1): only an object; the derive also read `[header, uuid, event]`.
    if !payload.trim_start_matches(WS).starts_with('{') {
        return Err("not an object".into());
    }
    let env: Envelope<'_> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    let header: Option<Header> = match env.header {
        None => None,
        Some(raw) if raw.get().starts_with('{') => {
            Some(serde_json::from_str(raw.get()).map_err(|e| e.to_string())?)
        }
        Some(_) => return Err("header is not an object".into()),
    };
    let uuid: Option<String> = match env.uuid {
        Some(raw) if raw.get().starts_with('"') => {
            Some(serde_json::from_str(raw.get()).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let v1_type = || {
        let raw = env.event?.get();
        // CHANGED (3): only an object has a type; the derive read `[type]` too.
        if !raw.starts_with('{') {
            return None;
        }
        let ev: Event = serde_json::from_str(raw).ok()?;
        ev.kind?.as_str().map(str::to_string)
    };
    let (event_type, event_id) = match header {
        Some(h) => (h.event_type.or_else(v1_type), h.event_id),
        None => (v1_type(), uuid),
    };
    Ok((event_type, event_id.filter(|s| !s.is_empty())))
}

const WS: [char; 4] = [' ', '\n', '\t', '\r'];

/// Which `CHANGED` departure explains a difference between the old code and the
/// reference on `s`, found independently of both.
fn departure(s: &str) -> Option<&'static str> {
    if !s.trim_start_matches(WS).starts_with('{') {
        return Some("(1) not an object");
    }
    let members: BTreeMap<String, &RawValue> = serde_json::from_str(s).ok()?;
    let starts = |key: &str, c: char| members.get(key).is_some_and(|v| v.get().starts_with(c));
    if starts("header", '[') {
        return Some("(2) header is an array");
    }
    if starts("event", '[') {
        return Some("(3) event is an array");
    }
    if let Some(uuid) = members.get("uuid") {
        // The same nesting as the old struct: the envelope object takes one level.
        let as_value = format!("{{\"uuid\":{}}}", uuid.get());
        if !uuid.get().starts_with('"')
            && serde_json::from_str::<serde_json::Value>(&as_value).is_err()
        {
            return Some("(4) uuid is not a serde_json::Value");
        }
    }
    None
}

fn check(s: &str) -> Result<(), TestCaseError> {
    let new = envelope_meta(s)
        .map(|m| {
            let owned = |v: Option<std::borrow::Cow<'_, str>>| v.map(|c| c.into_owned());
            (owned(m.event_type), owned(m.event_id))
        })
        .map_err(|e| e.to_string());
    let want = reference(s);
    prop_assert_eq!(
        new.is_ok(),
        want.is_ok(),
        "{:?}: scanner {:?}, reference {:?}",
        s,
        new,
        want
    );
    if let (Ok(got), Ok(want)) = (&new, &want) {
        prop_assert_eq!(got, want, "{:?}", s);
    }
    // Never looser than serde_json on JSON validity.
    if new.is_ok() {
        prop_assert!(serde_json::from_str::<IgnoredAny>(s).is_ok(), "{:?}", s);
    }
    let old = old_envelope_meta(s);
    if old.as_ref().ok() != want.as_ref().ok() {
        prop_assert!(
            departure(s).is_some(),
            "{:?}: old {:?}, reference {:?}",
            s,
            old,
            want
        );
    }
    Ok(())
}

/// A JSON value with its strings and numbers kept as source text, so that escapes,
/// number spellings and duplicate keys can be generated (a `serde_json::Value` could
/// not hold them).
#[derive(Clone, Debug)]
enum J {
    Lit(&'static str),
    Num(String),
    /// A string's body, already escaped.
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// Renders `j`, putting `ws[k % len]` at every place JSON allows whitespace.
fn render(j: &J, ws: &[&'static str]) -> String {
    fn pad(out: &mut String, ws: &[&str], k: &mut usize) {
        if !ws.is_empty() {
            out.push_str(ws[*k % ws.len()]);
            *k += 1;
        }
    }
    fn go(j: &J, out: &mut String, ws: &[&str], k: &mut usize) {
        match j {
            J::Lit(s) => out.push_str(s),
            J::Num(s) => out.push_str(s),
            J::Str(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            J::Arr(items) => list(items, ('[', ']'), out, ws, k, go),
            J::Obj(members) => list(
                members,
                ('{', '}'),
                out,
                ws,
                k,
                |(key, value), out, ws, k| {
                    out.push('"');
                    out.push_str(key);
                    out.push('"');
                    pad(out, ws, k);
                    out.push(':');
                    pad(out, ws, k);
                    go(value, out, ws, k);
                },
            ),
        }
    }
    /// A bracketed list of `items`, comma-separated, with whitespace around each (or
    /// inside an empty one).
    fn list<T>(
        items: &[T],
        (open, close): (char, char),
        out: &mut String,
        ws: &[&str],
        k: &mut usize,
        item: impl Fn(&T, &mut String, &[&str], &mut usize),
    ) {
        out.push(open);
        for (n, x) in items.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            pad(out, ws, k);
            item(x, out, ws, k);
            pad(out, ws, k);
        }
        if items.is_empty() {
            pad(out, ws, k);
        }
        out.push(close);
    }
    let mut out = String::new();
    let mut k = 0;
    pad(&mut out, ws, &mut k);
    go(j, &mut out, ws, &mut k);
    pad(&mut out, ws, &mut k);
    out
}

fn whitespace() -> impl Strategy<Value = Vec<&'static str>> {
    prop_oneof![
        Just(vec![]),
        proptest::collection::vec(
            prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t"), Just("\r\n")],
            1..6
        ),
    ]
}

/// String bodies (escaped): plain text, any printable Unicode, every escape, surrogate
/// pairs and lone surrogates.
fn body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[a-z_.0-9]{0,8}",
        3 => "\\PC{0,4}".prop_map(|s| {
            let quoted = serde_json::to_string(&s).unwrap();
            quoted[1..quoted.len() - 1].to_string()
        }),
        1 => Just("\\n".to_string()),
        1 => Just("\\\"".to_string()),
        1 => Just("\\\\".to_string()),
        1 => Just("\\/\\b\\f\\r\\t".to_string()),
        1 => Just("\\u00e9\\u0000\\u001F".to_string()),
        1 => Just("\\ud83d\\ude00".to_string()),
        1 => Just("\\uD83D\\uDE00".to_string()),
        1 => Just("\\ud800".to_string()),
        1 => Just("\\udc00".to_string()),
        1 => Just("\\ud800\\u0041".to_string()),
        1 => Just("\\ud800\\ud800".to_string()),
        1 => Just("\\ud800\\n".to_string()),
        1 => Just("x".repeat(300)),
    ];
    proptest::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        prop_oneof![
            Just("0"),
            Just("-0"),
            Just("0.5"),
            Just("-0.0e-0"),
            Just("1E+2"),
            Just("2.5e-3"),
            Just("1e400"),
            Just("-1e999"),
            Just("1e-400"),
            Just("123456789012345678901234567890"),
            Just(
                "1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            ),
        ]
        .prop_map(str::to_string),
    ]
}

/// Keys: the names the scanner looks for, spelled plainly and with escapes, names that
/// cannot be decoded, and anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("header"),
            Just("uuid"),
            Just("event"),
            Just("type"),
            Just("event_type"),
            Just("event_id"),
            Just("schema"),
            Just("head\\u0065r"),
            Just("\\u0075uid"),
            Just("\\u0074ype"),
            Just("event\\u005fid"),
            Just("event_\\u0074ype"),
            Just("\\ud800"),
            Just("ty\\udc00pe"),
        ]
        .prop_map(str::to_string),
        body(),
    ]
}

fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Lit("null")),
        Just(J::Lit("true")),
        Just(J::Lit("false")),
        number().prop_map(J::Num),
        body().prop_map(J::Str),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            proptest::collection::vec((key(), inner), 0..5).prop_map(J::Obj),
        ]
    })
}

/// Mostly a string, sometimes null or anything.
fn string_ish() -> impl Strategy<Value = J> {
    prop_oneof![
        4 => body().prop_map(J::Str),
        1 => Just(J::Lit("null")),
        1 => value(),
    ]
}

/// Envelopes: v2 and v1 shapes with their fields in any order, sometimes repeated, and of
/// any type.
fn envelope() -> impl Strategy<Value = J> {
    let header = prop_oneof![
        4 => proptest::collection::vec(
            (
                prop_oneof![
                    Just("event_type".to_string()),
                    Just("event_id".to_string()),
                    Just("event\\u005fid".to_string()),
                    key(),
                ],
                string_ish(),
            ),
            0..5,
        )
        .prop_map(J::Obj),
        1 => Just(J::Lit("null")),
        1 => proptest::collection::vec(string_ish(), 0..3).prop_map(J::Arr),
        1 => value(),
    ];
    let event = prop_oneof![
        4 => proptest::collection::vec(
            (
                prop_oneof![
                    3 => Just("type".to_string()),
                    1 => Just("\\u0074ype".to_string()),
                    3 => key(),
                ],
                string_ish(),
            ),
            0..4,
        )
        .prop_map(J::Obj),
        1 => proptest::collection::vec(string_ish(), 0..3).prop_map(J::Arr),
        1 => value(),
    ];
    let member = prop_oneof![
        3 => header.prop_map(|h| ("header".to_string(), h)),
        2 => string_ish().prop_map(|u| ("uuid".to_string(), u)),
        3 => event.prop_map(|e| ("event".to_string(), e)),
        3 => (key(), value()),
    ];
    proptest::collection::vec(member, 0..6).prop_map(J::Obj)
}

/// Mostly valid envelopes: each field at most once, header fields at most once each,
/// strings mostly plain, in any order with unknown members between.
fn clean_envelope() -> impl Strategy<Value = J> {
    let plain = || {
        prop_oneof![
            4 => "[a-z_.0-9]{0,12}".prop_map(J::Str),
            1 => body().prop_map(J::Str),
            1 => Just(J::Lit("null")),
            1 => value(),
        ]
    };
    let header = (
        proptest::option::of(plain()),
        proptest::option::of(plain()),
        proptest::collection::vec((key(), value()), 0..3),
    )
        .prop_flat_map(|(event_type, event_id, mut rest)| {
            rest.extend(event_type.map(|v| ("event_type".to_string(), v)));
            rest.extend(event_id.map(|v| ("event_id".to_string(), v)));
            Just(rest).prop_shuffle()
        })
        .prop_map(J::Obj);
    let event = (
        proptest::option::of(plain()),
        proptest::collection::vec(("[a-z_]{1,8}", value()), 0..3),
    )
        .prop_flat_map(|(kind, mut rest)| {
            rest.extend(kind.map(|v| ("type".to_string(), v)));
            Just(rest).prop_shuffle()
        })
        .prop_map(J::Obj);
    (
        proptest::option::of(prop_oneof![4 => header, 1 => Just(J::Lit("null"))]),
        proptest::option::of(plain()),
        proptest::option::of(prop_oneof![4 => event, 1 => value()]),
        proptest::collection::vec(("[a-z_]{1,8}", value()), 0..3),
    )
        .prop_flat_map(|(header, uuid, event, mut rest)| {
            rest.extend(header.map(|v| ("header".to_string(), v)));
            rest.extend(uuid.map(|v| ("uuid".to_string(), v)));
            rest.extend(event.map(|v| ("event".to_string(), v)));
            Just(rest).prop_shuffle()
        })
        .prop_map(J::Obj)
}

/// A value nested `depth` levels deep (arrays, objects or both), around the old
/// recursion limit of 128 or far beyond it.
fn deep() -> impl Strategy<Value = J> {
    (
        prop_oneof![100usize..=160, 1000usize..3000],
        any::<u64>(),
        value(),
    )
        .prop_map(|(depth, pattern, core)| {
            let mut j = core;
            for level in 0..depth {
                j = if pattern >> (level % 64) & 1 == 1 {
                    J::Obj(vec![("k".to_string(), j)])
                } else {
                    J::Arr(vec![j])
                };
            }
            j
        })
}

/// An envelope with a deep value in one of its places.
fn deep_envelope() -> impl Strategy<Value = J> {
    (deep(), 0..5usize, clean_envelope()).prop_map(|(deep, place, env)| {
        let J::Obj(mut members) = env else {
            unreachable!()
        };
        let member = match place {
            0 => ("x".to_string(), deep),
            1 => ("event".to_string(), deep),
            2 => ("uuid".to_string(), deep),
            3 => (
                "header".to_string(),
                J::Obj(vec![
                    ("event_id".into(), J::Str("e".into())),
                    ("x".into(), deep),
                ]),
            ),
            _ => (
                "event".to_string(),
                J::Obj(vec![
                    ("type".into(), J::Str("t".into())),
                    ("x".into(), deep),
                ]),
            ),
        };
        members.retain(|(k, _)| *k != member.0);
        members.push(member);
        J::Obj(members)
    })
}

/// Any of the valid-or-nearly shapes above, rendered.
fn text() -> impl Strategy<Value = String> {
    let shape = prop_oneof![
        4 => clean_envelope(),
        3 => envelope(),
        2 => value(),
        1 => proptest::collection::vec(value(), 0..4).prop_map(J::Arr),
        1 => deep_envelope(),
    ];
    (shape, whitespace()).prop_map(|(j, ws)| render(&j, &ws))
}

/// Scalar tokens on both sides of the grammar's edges: numbers with and without their
/// parts, strings with every escape letter and short or bad `\u` digits, control bytes,
/// unclosed quotes, and misspelt literals.
fn token() -> impl Strategy<Value = String> {
    use proptest::sample::select;
    let number = (
        select(vec!["", "", "-", "+", "--"]),
        select(vec!["0", "00", "01", "1", "12", "", "9007199254740993"]),
        select(vec!["", "", ".", ".5", ".05", "..5"]),
        select(vec![
            "", "", "e", "E", "e+", "e-", "e5", "E+07", "e-0", "ee1",
        ]),
        select(vec!["", "", "", " ", "x", ".", "0", "-"]),
    )
        .prop_map(|(a, b, c, d, e)| format!("{a}{b}{c}{d}{e}"));
    let piece = prop_oneof![
        3 => "[a-z]{0,3}",
        2 => (0x20u8..0x7f).prop_map(|c| format!("\\{}", c as char)),
        2 => ("[0-9a-fA-FxX\"g ]{0,5}").prop_map(|h| format!("\\u{h}")),
        1 => select(vec!["\\ud800", "\\udbff\\udfff", "\\udc00", "\\ud800\\", "\\ud800\\u"]).prop_map(str::to_string),
        1 => (0u8..0x20).prop_map(|c| (c as char).to_string()),
        1 => Just("\u{7f}é".to_string()),
    ];
    let string = (proptest::collection::vec(piece, 0..4), any::<u8>()).prop_map(|(p, close)| {
        let end = if close < 230 { "\"" } else { "" };
        format!("\"{}{end}", p.concat())
    });
    let literal = select(vec![
        "true", "false", "null", "tru", "nul", "nulll", "True", "n", "fals", "[]", "{}", "[", "{",
    ])
    .prop_map(str::to_string);
    prop_oneof![3 => number, 4 => string, 1 => literal]
}

/// Where a token goes: each place the scanner treats differently.
const PLACES: [&str; 12] = [
    "T",
    "[T]",
    r#"{"x":T}"#,
    r#"{"x":[1,T]}"#,
    r#"{"uuid":T}"#,
    r#"{"header":{"event_type":T}}"#,
    r#"{"header":{"event_id":T,"x":1}}"#,
    r#"{"event":{"type":T}}"#,
    r#"{T:1}"#,
    r#"{"header":{T:"e"}}"#,
    r#"{"event":{T:"t"}}"#,
    r#"{"x":{"y":1,T:2}}"#,
];

#[derive(Clone, Debug)]
enum Edit {
    Insert(Index, char),
    Replace(Index, char),
    Delete(Index, usize),
    Truncate(Index),
    /// Repeats a run of the text in place (duplicated keys, brackets, escapes).
    Repeat(Index, usize),
}

/// The characters that matter to a JSON scanner, plus a few that do not.
fn edit_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::sample::select(vec![
            '\0', '\u{1}', '\u{1f}', '\n', '\t', ' ', '\\', '"', '{', '}', '[', ']', ',', ':',
            '0', '1', '9', 'e', 'E', '-', '+', '.', 'u', 'd', '8', 'n', 't', 'f', 'a', 'x',
            '\u{7f}', 'é', '\u{feff}', '😀',
        ]),
        1 => any::<char>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), edit_char()).prop_map(|(i, c)| Edit::Insert(i, c)),
        3 => (any::<Index>(), edit_char()).prop_map(|(i, c)| Edit::Replace(i, c)),
        2 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), 1usize..12).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

/// Applies the edits to the text's chars, so the result stays a `&str` (the scanner's
/// input is UTF-8 already checked).
fn mutate(s: &str, edits: &[Edit]) -> String {
    let mut c: Vec<char> = s.chars().collect();
    for e in edits {
        let n = c.len();
        match *e {
            Edit::Insert(i, ch) => c.insert(i.index(n + 1), ch),
            Edit::Replace(i, ch) if n > 0 => c[i.index(n)] = ch,
            Edit::Delete(i, len) if n > 0 => {
                let at = i.index(n);
                c.drain(at..(at + len).min(n));
            }
            Edit::Truncate(i) => c.truncate(i.index(n + 1)),
            Edit::Repeat(i, len) if n > 0 => {
                let at = i.index(n);
                let run: Vec<char> = c[at..(at + len).min(n)].to_vec();
                c.splice(at..at, run);
            }
            _ => {}
        }
    }
    c.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(10_000), ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_the_reference_on_generated_json(s in text()) {
        check(&s)?;
    }

    #[test]
    fn agrees_with_the_reference_on_corrupted_json(
        s in text(),
        edits in proptest::collection::vec(edit(), 1..5),
    ) {
        check(&mutate(&s, &edits))?;
    }

    #[test]
    fn agrees_with_the_reference_on_edge_tokens(t in token()) {
        for place in PLACES {
            check(&place.replace('T', &t))?;
        }
    }

    /// Short texts of the characters that matter, for the paths no generated shape
    /// reaches (a lone `-`, `tru`, `"\u12`, …).
    #[test]
    fn agrees_with_the_reference_on_random_text(
        chars in proptest::collection::vec(edit_char(), 0..24),
    ) {
        let s: String = chars.into_iter().collect();
        check(&s)?;
        check(&format!("{{\"x\":{s}}}"))?;
        check(&format!("{{\"uuid\":\"{s}\"}}"))?;
        check(&format!("{{\"header\":{{\"event_id\":{s}}}}}"))?;
    }
}

#[test]
fn agrees_with_the_reference_on_the_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/events");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let s = std::fs::read_to_string(&path).unwrap();
            check(&s).unwrap();
            assert!(envelope_meta(&s).is_ok(), "{path:?}");
            seen += 1;
        }
    }
    assert!(seen >= 10);
}

/// The departures from the old code, each shown on the old code itself.
#[test]
fn departures_from_the_serde_derive_version() {
    let cases: [(&str, &str); 6] = [
        (r#"[null,null,null]"#, "(1) not an object"),
        (r#"{"header":["t","e"]}"#, "(2) header is an array"),
        (r#"{"event":["t"]}"#, "(3) event is an array"),
        (r#"{"uuid":1e400}"#, "(4) uuid is not a serde_json::Value"),
        (
            r#"{"uuid":["\ud800"]}"#,
            "(4) uuid is not a serde_json::Value",
        ),
        (
            &format!(r#"{{"uuid":{}{}}}"#, "[".repeat(127), "]".repeat(127)),
            "(4) uuid is not a serde_json::Value",
        ),
    ];
    for (s, why) in cases {
        assert_eq!(departure(s), Some(why), "{s}");
        assert_ne!(old_envelope_meta(s).ok(), reference(s).ok(), "{s}");
        check(s).unwrap();
    }
    assert_eq!(
        old_envelope_meta(r#"{"header":["t","e"]}"#),
        Ok((Some("t".into()), Some("e".into())))
    );
    assert_eq!(
        envelope_meta(r#"{"event":["t"]}"#).unwrap().event_type,
        None
    );
    // 126 levels inside uuid were fine for the old code too.
    let s = format!(r#"{{"uuid":{}{}}}"#, "[".repeat(126), "]".repeat(126));
    assert!(old_envelope_meta(&s).is_ok() && envelope_meta(&s).is_ok());
}
