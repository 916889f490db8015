//! Subject and body templates, pre-split into literal parts and placeholders so that rendering
//! an event is a handful of `memcpy`s and integer formats.
//!
//! Public so that other code rendering the benchmark's events (millstream-core's `event_cost`
//! example) gives the placeholders exactly the meaning they have here.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<[u8]>),
    /// `{seq}`: the event's sequence number.
    Seq,
    /// `{ts}`: `base_ts_ms + seq`.
    Ts,
    /// `{stamp}`: `<seq>_<t_ns>`.
    Stamp,
}

/// One compiled subject or body template: `{seq}`, `{ts}` and `{stamp}` are placeholders
/// (see [`Values`]), any other text is copied as it is.
///
/// ```
/// use millstream_loadgen::{Template, Values};
///
/// let t = Template::parse(r#"{"ts":{ts},"line":"L{stamp}"}"#);
/// let mut out = bytes::BytesMut::with_capacity(t.max_len());
/// t.render(&mut out, &mut itoa::Buffer::new(), Values { seq: 7, ts: 1_000, t_ns: 42 });
/// assert_eq!(&out[..], br#"{"ts":1000,"line":"L7_42"}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
    /// The whole rendering when there is no placeholder (cloning `Bytes` is a refcount bump).
    fixed: Option<Bytes>,
    /// Upper bound of the rendered length (literals plus 20 digits per number).
    max_len: usize,
}

const PLACEHOLDERS: [(&[u8], Part); 3] = [
    (b"{seq}", Part::Seq),
    (b"{ts}", Part::Ts),
    (b"{stamp}", Part::Stamp),
];

impl Template {
    /// Splits `text` at `{seq}`, `{ts}` and `{stamp}`; any other brace is literal text (bodies
    /// are usually JSON).
    pub fn parse(text: &str) -> Template {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut lit_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hit = if bytes[i] == b'{' {
                PLACEHOLDERS
                    .iter()
                    .find(|(token, _)| bytes[i..].starts_with(token))
            } else {
                None
            };
            match hit {
                Some((token, part)) => {
                    if lit_start < i {
                        parts.push(Part::Lit(bytes[lit_start..i].into()));
                    }
                    parts.push(part.clone());
                    i += token.len();
                    lit_start = i;
                }
                None => i += 1,
            }
        }
        if lit_start < bytes.len() {
            parts.push(Part::Lit(bytes[lit_start..].into()));
        }
        let fixed = match parts.as_slice() {
            [] => Some(Bytes::new()),
            [Part::Lit(l)] => Some(Bytes::copy_from_slice(l)),
            _ => None,
        };
        let max_len = parts
            .iter()
            .map(|p| match p {
                Part::Lit(l) => l.len(),
                Part::Seq | Part::Ts => 20,
                Part::Stamp => 41,
            })
            .sum();
        Template {
            parts,
            fixed,
            max_len,
        }
    }

    pub(crate) fn has_stamp(&self) -> bool {
        self.parts.contains(&Part::Stamp)
    }

    pub(crate) fn fixed(&self) -> Option<&Bytes> {
        self.fixed.as_ref()
    }

    /// An upper bound of the rendered length in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Appends the rendering to `out` (which must have room for `max_len` more bytes to avoid
    /// a reallocation).
    pub fn render(&self, out: &mut BytesMut, num: &mut itoa::Buffer, v: Values) {
        for part in &self.parts {
            match part {
                Part::Lit(l) => out.put_slice(l),
                Part::Seq => out.put_slice(num.format(v.seq).as_bytes()),
                Part::Ts => out.put_slice(num.format(v.ts).as_bytes()),
                Part::Stamp => {
                    out.put_slice(num.format(v.seq).as_bytes());
                    out.put_u8(b'_');
                    out.put_slice(num.format(v.t_ns).as_bytes());
                }
            }
        }
    }
}

/// The numbers substituted into one event.
#[derive(Debug, Clone, Copy)]
pub struct Values {
    /// `{seq}`: the event's sequence number.
    pub seq: u64,
    /// `{ts}`: the generator uses `base_ts_ms + seq`.
    pub ts: u64,
    /// The second half of `{stamp}` (`<seq>_<t_ns>`): the generator uses the send time in
    /// nanoseconds since the run's start.
    pub t_ns: u64,
}

/// Finds `marker` in a body and parses the `<seq>_<t_ns>` stamp right after it.
#[derive(Debug, Clone)]
pub(crate) struct StampParser {
    finder: memchr::memmem::Finder<'static>,
    marker_len: usize,
}

impl StampParser {
    pub(crate) fn new(marker: &str) -> StampParser {
        StampParser {
            finder: memchr::memmem::Finder::new(marker.as_bytes()).into_owned(),
            marker_len: marker.len(),
        }
    }

    /// `(seq, t_ns)` from the first occurrence of the marker, or `None` if the marker is
    /// missing or not followed by a well-formed stamp.
    pub(crate) fn parse(&self, body: &[u8]) -> Option<(u64, u64)> {
        let at = self.finder.find(body)? + self.marker_len;
        let rest = body.get(at..)?;
        let (seq, used) = parse_u64(rest)?;
        if rest.get(used) != Some(&b'_') {
            return None;
        }
        let (t_ns, _) = parse_u64(&rest[used + 1..])?;
        Some((seq, t_ns))
    }
}

/// A leading run of ASCII digits as u64 and its length; `None` if empty or overflowing.
fn parse_u64(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Template, seq: u64, ts: u64, t_ns: u64) -> String {
        let mut out = BytesMut::new();
        t.render(&mut out, &mut itoa::Buffer::new(), Values { seq, ts, t_ns });
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn renders_placeholders_and_keeps_other_braces() {
        let t = Template::parse(r#"{"seq":{seq},"ts":{ts},"line":"L{stamp}","x":{y}}"#);
        assert!(t.fixed().is_none());
        assert!(t.has_stamp());
        let s = render(&t, 7, 1_700_000_000_007, 123_456);
        assert_eq!(
            s,
            r#"{"seq":7,"ts":1700000000007,"line":"L7_123456","x":{y}}"#
        );
        assert!(s.len() <= t.max_len());
    }

    #[test]
    fn fixed_template() {
        let t = Template::parse("mfg.telemetry.a");
        assert_eq!(t.fixed().map(|b| b.as_ref()), Some(&b"mfg.telemetry.a"[..]));
        assert!(!t.has_stamp());
        let t = Template::parse("s.{seq}");
        assert!(t.fixed().is_none());
        assert_eq!(render(&t, 42, 0, 0), "s.42");
    }

    #[test]
    fn parses_stamp_after_marker() {
        let p = StampParser::new(r#""line":"L"#);
        assert_eq!(
            p.parse(br#"{"a":1,"line":"L12_3456","line":"L9_9"}"#),
            Some((12, 3456))
        );
        assert_eq!(p.parse(br#"{"line":"L12"}"#), None);
        assert_eq!(p.parse(br#"{"line":"L_5"}"#), None);
        assert_eq!(p.parse(br#"{"line":"L12_"}"#), None);
        assert_eq!(p.parse(br#"{"other":1}"#), None);
        assert_eq!(p.parse(br#""line":"L99999999999999999999999_1"#), None);
        assert_eq!(p.parse(br#""line":"L0_0"#), Some((0, 0)));
    }
}
