//! Decode stage: raw bytes -> a JSON object, within limits.
//!
//! sonic-rs does the parsing, and serde_json again where sonic-rs refuses the input (see
//! `decode`). What neither does, and we add: a configurable nesting limit, rejecting
//! duplicate object keys (both keep the last one silently), telling an integer too large for
//! 64 bits apart from a float (both turn it into an f64), and a distinct reason code for each
//! class of bad input so a dead letter says what was wrong.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use hashbrown::HashSet;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::error::{Reason, Rejection};
use crate::json::{Json, Obj};

/// Limits applied before and during parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 65_536,
            max_depth: 32,
        }
    }
}

// Markers carried through serde's string-only custom errors.
const DUP_MARK: &str = "\u{1}millstream-duplicate-key:";
const DEPTH_MARK: &str = "\u{1}millstream-too-deep";

/// Decode one event payload into a JSON object that borrows from `bytes`.
// Never inlined: `scripts/profile-e2e` tells the pipeline's stages apart by their frames (one
// call per event, a few ns).
#[inline(never)]
pub fn decode<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Obj<'a>, Rejection> {
    if bytes.len() > limits.max_bytes {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!("{} bytes, limit {}", bytes.len(), limits.max_bytes),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            Reason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    if text
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .is_empty()
    {
        return Err(Rejection::new(Reason::EmptyDocument, "no JSON value"));
    }
    let big_float = Cell::new(false);
    let seed = ValueSeed {
        depth_left: limits.max_depth,
        big_float: &big_float,
    };
    // sonic-rs parses with SIMD and is the faster of the two on event-sized documents; its
    // errors do not tell our reason classes apart, so input it refuses is parsed again by
    // serde_json, whose verdict and message are the ones reported (bad input is rare).
    let value = match parse_fast(text, seed) {
        Some(v) => v,
        None => {
            big_float.set(false);
            parse_checked(text, seed)?
        }
    };
    if big_float.get() {
        // An integral f64 of 2^63 or more: either a float literal or an integer literal
        // serde_json silently widened. Only the text can tell.
        if let Some(r) = scan_numbers(text) {
            return Err(r);
        }
    }
    match value {
        Json::Obj(map) => Ok(map),
        other => Err(Rejection::new(
            Reason::NotAnObject,
            format!("top level is {}, expected an object", other.kind()),
        )),
    }
}

fn parse_fast<'a>(text: &'a str, seed: ValueSeed<'_>) -> Option<Json<'a>> {
    let mut de = sonic_rs::Deserializer::from_str(text);
    seed.deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .ok()
}

fn parse_checked<'a>(text: &'a str, seed: ValueSeed<'_>) -> Result<Json<'a>, Rejection> {
    let mut de = serde_json::Deserializer::from_str(text);
    seed.deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| classify(e, text))
}

fn classify(e: serde_json::Error, text: &str) -> Rejection {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix(DUP_MARK) {
        return Rejection::new(Reason::DuplicateKey, format!("duplicate key {rest}"));
    }
    if msg.starts_with(DEPTH_MARK) || msg.starts_with("recursion limit exceeded") {
        return Rejection::new(Reason::TooDeep, "nesting deeper than the limit");
    }
    if let Some(r) = scan_numbers(text) {
        return r;
    }
    let reason = if msg.starts_with("trailing characters") {
        Reason::TrailingData
    } else if msg.contains("surrogate")
        || msg.contains("unicode code point")
        || msg.contains("hex escape")
    {
        Reason::InvalidUnicodeEscape
    } else if msg.starts_with("number out of range") {
        Reason::NonFiniteNumber
    } else {
        Reason::MalformedJson
    };
    Rejection::new(reason, msg)
}

/// Look through the text, outside strings, for number tokens JSON forbids or we refuse:
/// `NaN`, `Infinity`, and integers that fit neither i64 nor u64. Hand-written because no JSON
/// library reports these as their own class; it runs only on the rare failing/suspect input.
fn scan_numbers(text: &str) -> Option<Rejection> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' | b'N' | b'I' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"+-.".contains(&b[i])) {
                    i += 1;
                }
                let tok = &text[start..i];
                let bare = tok.trim_start_matches('-');
                if bare.starts_with("NaN") || bare.starts_with("Infinity") {
                    return Some(Rejection::new(
                        Reason::NonFiniteNumber,
                        format!("{tok} is not a JSON number"),
                    ));
                }
                let integral = !tok.contains(['.', 'e', 'E']);
                if integral
                    && !bare.is_empty()
                    && bare.bytes().all(|c| c.is_ascii_digit())
                    && tok.parse::<i64>().is_err()
                    && tok.parse::<u64>().is_err()
                {
                    return Some(Rejection::new(
                        Reason::IntegerOverflow,
                        format!("integer {tok} does not fit in 64 bits"),
                    ));
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[derive(Clone, Copy)]
struct ValueSeed<'c> {
    depth_left: usize,
    big_float: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Json<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn nested<E: de::Error>(&self) -> Result<ValueSeed<'_>, E> {
        if self.depth_left == 0 {
            return Err(E::custom(DEPTH_MARK));
        }
        Ok(ValueSeed {
            depth_left: self.depth_left - 1,
            big_float: self.big_float,
        })
    }
}

/// Object keys, borrowed when they have no escapes (serde's own `Cow` impl always copies).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

// Objects up to this many keys are checked for duplicates without hashing: a 64-bit mask of
// cheap key fingerprints, and a scan of the keys so far only when a fingerprint repeats (Odoo
// bodies have 15-40 keys, where a set cost 2-3% of the core). Larger objects switch to a set
// (the mask would be full), so a hostile payload with thousands of keys stays linear.
const LINEAR_DUP_CHECK: usize = 64;

/// Which of 64 bits a key sets: from its length and its first and last bytes, so keys of
/// one event mostly differ.
fn key_bit(k: &str) -> u64 {
    let b = k.as_bytes();
    let (first, last) = (b.first().copied(), b.last().copied());
    let h = (b.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(first.unwrap_or(0)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ u64::from(last.unwrap_or(0)).wrapping_mul(0x1656_67B1_9E37_79F9);
    1 << (h >> 58)
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(i64::try_from(v).map_or(Json::UInt(v), Json::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
        if !v.is_finite() {
            return Err(E::custom("number out of range"));
        }
        if v.fract() == 0.0 && v.abs() >= 9.2e18 {
            self.big_float.set(true);
        }
        Ok(Json::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Json::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let inner = self.nested()?;
        let mut out: Obj<'de> = Vec::with_capacity(16);
        let mut seen: Option<HashSet<Cow<'de, str>>> = None;
        let mut mask = 0u64;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let v = map.next_value_seed(inner)?;
            let dup = match &mut seen {
                Some(set) => !set.insert(key.clone()),
                None if out.len() < LINEAR_DUP_CHECK => {
                    let bit = key_bit(&key);
                    let maybe = mask & bit != 0;
                    mask |= bit;
                    maybe && out.iter().any(|(k, _)| *k == key)
                }
                None => {
                    let mut set: HashSet<Cow<'de, str>> =
                        out.iter().map(|(k, _)| k.clone()).collect();
                    let dup = !set.insert(key.clone());
                    seen = Some(set);
                    dup
                }
            };
            if dup {
                return Err(de::Error::custom(format_args!("{DUP_MARK}{key:?}")));
            }
            out.push((key, v));
        }
        Ok(Json::Obj(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &[u8]) -> Option<Reason> {
        decode(input, &Limits::default()).err().map(|r| r.reason)
    }

    #[test]
    fn good_object_decodes() {
        let m = decode(
            br#" {"a": 1, "b": [1, 2.5, "x\n"], "c": {"d": null}} "#,
            &Limits::default(),
        )
        .expect("decodes");
        assert!(
            matches!(m[0].0, Cow::Borrowed("a")),
            "unescaped keys borrow"
        );
        assert_eq!(
            Json::Obj(m).to_value(),
            serde_json::json!({"a": 1, "b": [1, 2.5, "x\n"], "c": {"d": null}})
        );
    }

    #[test]
    fn each_bad_input_class_has_its_own_reason() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let deep = format!(r#"{{"a": {deep}}}"#);
        let big = vec![b' '; 70_000];
        let cases: Vec<(&[u8], Reason)> = vec![
            (&big, Reason::TooLarge),
            (b"", Reason::EmptyDocument),
            (b"  \n ", Reason::EmptyDocument),
            (b"{\"a\": \"\xff\"}", Reason::InvalidUtf8),
            (b"{\"a\": }", Reason::MalformedJson),
            (b"{\"a\": 1", Reason::MalformedJson),
            (b"{\"a\": 1} x", Reason::TrailingData),
            (b"{\"a\": 1}{}", Reason::TrailingData),
            (deep.as_bytes(), Reason::TooDeep),
            (b"{\"a\": 1, \"a\": 2}", Reason::DuplicateKey),
            (b"{\"a\": NaN}", Reason::NonFiniteNumber),
            (b"{\"a\": -Infinity}", Reason::NonFiniteNumber),
            (b"{\"a\": 1e400}", Reason::NonFiniteNumber),
            (
                b"{\"a\": 123456789012345678901234}",
                Reason::IntegerOverflow,
            ),
            (b"{\"a\": -9223372036854775809}", Reason::IntegerOverflow),
            (b"{\"a\": \"\\ud800\"}", Reason::InvalidUnicodeEscape),
            (b"{\"a\": \"\\udc00x\"}", Reason::InvalidUnicodeEscape),
            (b"[1, 2]", Reason::NotAnObject),
            (b"\"text\"", Reason::NotAnObject),
        ];
        for (input, want) in cases {
            assert_eq!(
                reason(input),
                Some(want),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// The two parsers agree on what is JSON and what it says: inputs built to sit on the
    /// grammar's edges, and thousands of random corruptions of real events. sonic-rs
    /// accepting something serde_json refuses would let bad input through.
    #[test]
    fn the_fast_parser_accepts_exactly_what_serde_json_accepts() {
        let big_float = Cell::new(false);
        let seed = ValueSeed {
            depth_left: 32,
            big_float: &big_float,
        };
        let agree = |text: &str| {
            let fast = parse_fast(text, seed);
            let checked = parse_checked(text, seed).ok();
            assert_eq!(fast, checked, "input {text:?}");
        };
        let edges = [
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": -}"#,
            r#"{"a": +1}"#,
            r#"{"a": 1e}"#,
            r#"{"a": 1e+}"#,
            r#"{"a": -0}"#,
            r#"{"a": -0.0}"#,
            r#"{"a": 1E5}"#,
            r#"{"a": 1.5e-3}"#,
            r#"{"a": 0.1}"#,
            r#"{"a": 2.2250738585072011e-308}"#,
            r#"{"a": 1.7976931348623157e308}"#,
            r#"{"a": 5e-324}"#,
            r#"{"a": 123456789.123456789}"#,
            r#"{"a": 9223372036854775807}"#,
            r#"{"a": -9223372036854775808}"#,
            r#"{"a": 18446744073709551615}"#,
            r#"{"a": 18446744073709551616}"#,
            r#"{"a": 1e19}"#,
            r#"{"a": "\u00e9\n\t\"\\\/"}"#,
            r#"{"a": "\ud83d\ude00"}"#,
            r#"{"a": "\ud800"}"#,
            r#"{"a": "\udc00"}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": "\u12"}"#,
            "{\"a\": \"tab\tinside\"}",
            "{\"a\": \"nl\ninside\"}",
            "{\"a\": \"\u{7f}\"}",
            "{\"a\": \"\u{1}\"}",
            r#"{"a": tru}"#,
            r#"{"a": nul}"#,
            r#"{"a": True}"#,
            r#"{"a": [1,]}"#,
            r#"{"a": 1,}"#,
            r#"{,}"#,
            r#"{"a" 1}"#,
            r#"{"a":: 1}"#,
            r#"{'a': 1}"#,
            r#"{a: 1}"#,
            "{\"a\": 1}\u{0}",
            "\u{feff}{\"a\": 1}",
            "{\"a\":1}\n",
            " \t\r\n{\"a\":1} \t\r\n",
            r#"{"a": [[[[]]]]}"#,
            r#"{"a": {"b": {}}}"#,
            r#"{"": 1}"#,
            r#"{"a": 1} // c"#,
            r#"/* c */ {"a": 1}"#,
            r#"{"a": NaN}"#,
            r#"{"a": Infinity}"#,
            r#"{"a": "x"#,
            r#"{"a": 1"#,
            r#"{"#,
            r#"}"#,
            r#"{"a": 1}}"#,
            r#"{"a": 1} 2"#,
            "{\"a\": \"\u{2028}\"}",
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": [1, 2], "b": [true, false, null]}"#,
        ];
        for e in edges {
            agree(e);
        }
        let events = [
            r#"{"plant":"dus","machine":"press-07","line":"L2","metric":"oil_temp","value":180.5,"unit":"degF","ts":1795767302123,"quality":"Good","seq":884120,"tags":["a","b"],"meta":{"x":null,"y":-1.5e-7}}"#,
            r#"{"_action": "Millstream: stock moves(#12)", "_id": 4720, "date": "2026-11-28 06:00:00", "product_uom_qty": 500.0, "production_id": false, "name": "caf\u00e9 \"quoted\"", "picking_id": [305, "WH/IN/00305"]}"#,
        ];
        let specials: &[u8] = b"\"\\,:{}[] 0123456789.eE+-tfnux\t\n\x01\x7f/";
        let mut rnd = crate::test_rng(0x9E37_79B9_7F4A_7C15);
        for doc in events {
            for _ in 0..3_000 {
                let mut b = doc.as_bytes().to_vec();
                for _ in 0..1 + rnd() % 3 {
                    let i = (rnd() % b.len() as u64) as usize;
                    let c = specials[(rnd() % specials.len() as u64) as usize];
                    match rnd() % 3 {
                        0 => b[i] = c,
                        1 => b.insert(i, c),
                        _ => {
                            b.remove(i);
                        }
                    }
                }
                if let Ok(text) = std::str::from_utf8(&b) {
                    agree(text);
                }
            }
        }
    }

    #[test]
    fn duplicates_found_in_large_objects_too() {
        let mut doc = String::from("{");
        for i in 0..100 {
            doc.push_str(&format!("\"k{i}\": {i}, "));
        }
        doc.push_str("\"k57\": 0}");
        assert_eq!(reason(doc.as_bytes()), Some(Reason::DuplicateKey));
        assert_eq!(
            reason(doc.replace("\"k57\": 0", "\"k100\": 0").as_bytes()),
            None
        );
    }

    #[test]
    fn duplicates_found_at_every_size_and_position() {
        // Keys of one length with the same first and last byte share a fingerprint, so
        // these objects exercise the scan behind the mask as well as the mask.
        for n in 1..=70 {
            let keys: Vec<String> = (0..n).map(|i| format!("k{i:03}x")).collect();
            let body: Vec<String> = keys.iter().map(|k| format!("\"{k}\": 1")).collect();
            let doc = format!("{{{}}}", body.join(", "));
            assert_eq!(reason(doc.as_bytes()), None, "{n} distinct keys");
            for k in &keys {
                let doc = format!("{{{}, \"{k}\": 2}}", body.join(", "));
                assert_eq!(
                    reason(doc.as_bytes()),
                    Some(Reason::DuplicateKey),
                    "{k} of {n}"
                );
            }
        }
    }

    #[test]
    fn big_floats_and_u64_are_accepted() {
        assert_eq!(reason(b"{\"a\": 1e19}"), None);
        assert_eq!(reason(b"{\"a\": 18446744073709551615}"), None);
        assert_eq!(reason(b"{\"a\": \"NaN 99999999999999999999\"}"), None);
    }

    #[test]
    fn depth_limit_is_configurable() {
        let limits = Limits {
            max_bytes: 1000,
            max_depth: 2,
        };
        assert!(decode(br#"{"a": {"b": 1}}"#, &limits).is_ok());
        assert_eq!(
            decode(br#"{"a": {"b": [1]}}"#, &limits)
                .err()
                .map(|r| r.reason),
            Some(Reason::TooDeep)
        );
    }
}
