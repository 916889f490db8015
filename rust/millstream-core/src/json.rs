//! A borrowed JSON document: what `decode` produces and `map` reads.
//!
//! Strings without escapes borrow from the payload and objects are small vectors, so decoding a
//! typical 200-600 byte event allocates a handful of times instead of once per key and string
//! (as `serde_json::Value` does). Lookups are linear scans, which beat hashing or tree search
//! at event sizes. Converted to `serde_json::Value` only where a library needs one (source
//! JSON Schemas).

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    Obj(Obj<'a>),
}

pub type Obj<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

/// A scalar as templates and value maps see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar<'b> {
    Str(&'b str),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

impl Scalar<'_> {
    /// The text form: strings as they are, numbers as JSON writes them.
    pub fn write_to(self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match self {
            Scalar::Str(s) => {
                out.push_str(s);
                Ok(())
            }
            // itoa: integer ids are the most common scalar; core::fmt showed in profiles.
            Scalar::Int(i) => {
                out.push_str(itoa::Buffer::new().format(i));
                Ok(())
            }
            Scalar::UInt(u) => {
                out.push_str(itoa::Buffer::new().format(u));
                Ok(())
            }
            Scalar::Float(f) => match Number::from_f64(f) {
                Some(n) => write!(out, "{n}"),
                None => write!(out, "{f}"),
            },
            Scalar::Bool(b) => {
                out.push_str(if b { "true" } else { "false" });
                Ok(())
            }
        };
    }

    pub fn to_cow(self) -> Cow<'static, str> {
        let mut s = String::new();
        self.write_to(&mut s);
        Cow::Owned(s)
    }
}

/// What a template placeholder found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Found<'b> {
    Missing,
    Compound,
    Scalar(Scalar<'b>),
}

impl<'a> Json<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(o) => obj_get(o, key),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Found<'_> {
        match self {
            Json::Null => Found::Missing,
            Json::Bool(b) => Found::Scalar(Scalar::Bool(*b)),
            Json::Int(i) => Found::Scalar(Scalar::Int(*i)),
            Json::UInt(u) => Found::Scalar(Scalar::UInt(*u)),
            Json::Float(f) => Found::Scalar(Scalar::Float(*f)),
            Json::Str(s) => Found::Scalar(Scalar::Str(s)),
            Json::Arr(_) | Json::Obj(_) => Found::Compound,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::UInt(u) => Value::from(*u),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.to_string()),
            Json::Arr(a) => Value::Array(a.iter().map(Json::to_value).collect()),
            Json::Obj(o) => Value::Object(obj_to_map(o)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) | Json::UInt(_) | Json::Float(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }
}

pub fn obj_get<'b, 'a>(obj: &'b Obj<'a>, key: &str) -> Option<&'b Json<'a>> {
    obj.iter().find(|(k, _)| same_key(k, key)).map(|(_, v)| v)
}

/// Key equality that rejects on length and first byte before calling `memcmp`: most keys in
/// a scan differ there, and the call showed in profiles.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

pub fn obj_to_map(obj: &Obj<'_>) -> Map<String, Value> {
    obj.iter()
        .map(|(k, v)| (k.to_string(), v.to_value()))
        .collect()
}

/// Follow a dotted path through objects (and arrays, for numeric tokens).
pub fn lookup<'b, 'a>(root: &'b Obj<'a>, path: &[String]) -> Option<&'b Json<'a>> {
    let (first, rest) = path.split_first()?;
    let mut cur = obj_get(root, first)?;
    for seg in rest {
        cur = match cur {
            Json::Obj(o) => obj_get(o, seg)?,
            Json::Arr(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The same view of a `serde_json::Value` (the canonical entity).
pub fn value_scalar(v: Option<&Value>) -> Found<'_> {
    match v {
        None | Some(Value::Null) => Found::Missing,
        Some(Value::Bool(b)) => Found::Scalar(Scalar::Bool(*b)),
        Some(Value::Number(n)) => Found::Scalar(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Scalar::Int(i),
            (None, Some(u)) => Scalar::UInt(u),
            _ => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Some(Value::String(s)) => Found::Scalar(Scalar::Str(s)),
        Some(_) => Found::Compound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_render_like_json() {
        let cases = [
            (Scalar::Str("a b"), "a b"),
            (Scalar::Int(-3), "-3"),
            (Scalar::UInt(u64::MAX), "18446744073709551615"),
            (Scalar::Float(1.5), "1.5"),
            (Scalar::Float(100.0), "100.0"),
            (Scalar::Bool(true), "true"),
        ];
        for (s, want) in cases {
            assert_eq!(s.to_cow(), want);
        }
    }

    /// The canonical JSON that outputs carry is written by sonic-rs (faster) and must be
    /// byte for byte what serde_json writes: strings with every kind of character that needs
    /// escaping, floats across their range, integers at the edges.
    #[test]
    fn sonic_rs_writes_what_serde_json_writes() {
        let mut rnd = crate::test_rng(0x2545_F491_4F6C_DD1D);
        let mut values: Vec<Json<'static>> = vec![
            Json::Null,
            Json::Bool(true),
            Json::Int(i64::MIN),
            Json::Int(-1),
            Json::UInt(u64::MAX),
            Json::Str("plain".into()),
            Json::Str("quote \" backslash \\ slash / nl \n tab \t cr \r bs \u{8} ff \u{c}".into()),
            Json::Str("\u{0}\u{1}\u{1f}\u{7f}\u{80}\u{2028}\u{2029}é😀".into()),
        ];
        for f in [
            0.0,
            -0.0,
            1.0,
            100.0,
            180.5,
            1e15,
            1e16,
            1e17,
            1e21,
            1e22,
            1.5e-7,
            1e-5,
            0.1,
            0.3,
            123456.789,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
        ] {
            values.push(Json::Float(f));
        }
        for _ in 0..5_000 {
            let bits = rnd();
            let f = f64::from_bits(bits);
            if f.is_finite() {
                values.push(Json::Float(f));
            }
            values.push(Json::Float((rnd() % 1_000_000) as f64 / 100.0));
            let s: String = (0..rnd() % 12)
                .map(|_| char::from_u32((rnd() % 0x3000) as u32).unwrap_or('?'))
                .collect();
            values.push(Json::Str(s.into()));
        }
        let doc = Json::Obj(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (Cow::Owned(format!("k{i}")), v.clone()))
                .chain([("arr".into(), Json::Arr(values.clone()))])
                .collect(),
        );
        let mut fast = Vec::new();
        write_json(&mut fast, &doc).expect("writes");
        let slow = serde_json::to_vec(&doc).expect("writes");
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&slow)
        );
    }

    #[test]
    fn lookup_follows_objects_and_arrays() {
        let doc: Obj<'_> = vec![
            (
                "a".into(),
                Json::Obj(vec![(
                    "b".into(),
                    Json::Arr(vec![Json::Int(1), Json::Int(2)]),
                )]),
            ),
            ("s".into(), Json::Str("x".into())),
        ];
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(lookup(&doc, &p("a.b.1")), Some(&Json::Int(2)));
        assert_eq!(lookup(&doc, &p("a.c")), None);
        assert_eq!(lookup(&doc, &p("s.x")), None);
        assert_eq!(
            Json::Obj(doc.clone()).to_value(),
            serde_json::json!({"a": {"b": [1, 2]}, "s": "x"})
        );
    }
}

// --- serialisation ------------------------------------------------------------------------

/// Append `doc` as JSON to `out`. sonic-rs's writer (SIMD string escaping) through the same
/// `Serialize` impl; a test holds it to serde_json's output byte for byte.
pub fn write_json(out: &mut Vec<u8>, doc: &Json<'_>) -> Result<(), String> {
    sonic_rs::to_writer(out, doc).map_err(|e| e.to_string())
}

/// `"key":` as `write_json` writes an object key, preceded by `{` for an object's first key
/// and `,` for the others: computed once per canonical field, when a plan is compiled.
pub fn key_text(first: bool, key: &str) -> Box<[u8]> {
    use sonic_rs::format::{CompactFormatter, Formatter};
    let mut out = vec![if first { b'{' } else { b',' }];
    // Writing into a Vec cannot fail.
    let _ = CompactFormatter.write_string_fast(&mut out, key, true);
    out.push(b':');
    out.into_boxed_slice()
}

/// Append one value as `write_json` would: scalars straight through sonic-rs's formatter
/// (the same calls its serializer makes, without serde's per-value protocol around them).
pub fn write_value(out: &mut Vec<u8>, v: &Json<'_>) -> Result<(), String> {
    use sonic_rs::format::{CompactFormatter, Formatter};
    let mut f = CompactFormatter;
    match v {
        Json::Null => f.write_null(out),
        Json::Bool(b) => f.write_bool(out, *b),
        Json::Int(i) => f.write_i64(out, *i),
        Json::UInt(u) => f.write_u64(out, *u),
        // As sonic-rs's and serde_json's serializers do.
        Json::Float(x) if !x.is_finite() => f.write_null(out),
        Json::Float(x) => f.write_f64(out, *x),
        Json::Str(s) => f.write_string_fast(out, s, true),
        Json::Arr(_) | Json::Obj(_) => return write_json(out, v),
    }
    .map_err(|e| e.to_string())
}

impl serde::Serialize for Json<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Int(i) => s.serialize_i64(*i),
            Json::UInt(u) => s.serialize_u64(*u),
            Json::Float(f) => s.serialize_f64(*f),
            Json::Str(v) => s.serialize_str(v),
            Json::Arr(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Json::Obj(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
        }
    }
}

// --- the jsonschema crate's view of a document --------------------------------------------
// jsonschema validates any representation that implements its `Json` trait family; doing so
// here lets source payloads and canonical entities be validated where they are, with no
// conversion to `serde_json::Value` per event.

/// Marker type naming this representation to `jsonschema`.
pub struct Doc;

impl jsonschema::json::Json for Doc {
    type Node<'a> = &'a Json<'a>;
    type PreparedKey = String;
    type StringBuffer = ();

    // Objects are vectors: a members pass is as cheap as a couple of lookups.
    const KEYS_PER_LOOKUP: usize = 2;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(
        (): &mut (),
        string: &str,
        f: impl for<'r> FnOnce(&'r Json<'r>) -> T,
    ) -> T {
        let node = Json::Str(Cow::Borrowed(string));
        f(&node)
    }
}

#[derive(Clone, Copy)]
pub struct ObjRef<'a>(&'a Obj<'a>);

#[derive(Clone, Copy)]
pub struct ArrRef<'a>(&'a [Json<'a>]);

/// A number node: one of the numeric variants.
#[derive(Clone, Copy)]
pub struct NumRef<'a>(&'a Json<'a>);

impl jsonschema::json::JsonNumber for NumRef<'_> {
    fn as_u64(&self) -> Option<u64> {
        match self.0 {
            Json::Int(i) => u64::try_from(*i).ok(),
            Json::UInt(u) => Some(*u),
            _ => None,
        }
    }
    fn as_i64(&self) -> Option<i64> {
        match self.0 {
            Json::Int(i) => Some(*i),
            Json::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self.0 {
            Json::Int(i) => Some(*i as f64),
            Json::UInt(u) => Some(*u as f64),
            Json::Float(f) => Some(*f),
            _ => None,
        }
    }
    fn as_str(&self) -> Cow<'_, str> {
        match self.0.scalar() {
            Found::Scalar(s) => s.to_cow(),
            _ => Cow::Borrowed(""),
        }
    }
    fn to_number(&self) -> Cow<'_, Number> {
        Cow::Owned(match self.0 {
            Json::Int(i) => Number::from(*i),
            Json::UInt(u) => Number::from(*u),
            Json::Float(f) => Number::from_f64(*f).unwrap_or_else(|| Number::from(0)),
            _ => Number::from(0),
        })
    }
    fn is_integer(&self) -> bool {
        match self.0 {
            Json::Int(_) | Json::UInt(_) => true,
            Json::Float(f) => f.fract() == 0.0,
            _ => false,
        }
    }
    fn is_written_as_integer(&self) -> bool {
        matches!(self.0, Json::Int(_) | Json::UInt(_))
    }
}

impl<'a> jsonschema::json::Node<'a, Doc> for &'a Json<'a> {
    type Object = ObjRef<'a>;
    type Array = ArrRef<'a>;
    type Number = NumRef<'a>;

    fn as_object(&self) -> Option<ObjRef<'a>> {
        match self {
            Json::Obj(o) => Some(ObjRef(o)),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<ArrRef<'a>> {
        match self {
            Json::Arr(a) => Some(ArrRef(a)),
            _ => None,
        }
    }
    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            Json::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            _ => None,
        }
    }
    fn as_number(&self) -> Option<NumRef<'a>> {
        matches!(self, Json::Int(_) | Json::UInt(_) | Json::Float(_)).then_some(NumRef(self))
    }
    fn as_boolean(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
    fn json_type(&self) -> jsonschema::types::JsonType {
        use jsonschema::types::JsonType as T;
        match self {
            Json::Null => T::Null,
            Json::Bool(_) => T::Boolean,
            Json::Int(_) | Json::UInt(_) | Json::Float(_) => T::Number,
            Json::Str(_) => T::String,
            Json::Arr(_) => T::Array,
            Json::Obj(_) => T::Object,
        }
    }
    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(Json::to_value(self))
    }
    fn identity(&self) -> Option<jsonschema::json::NodeIdentity> {
        Some(jsonschema::json::NodeIdentity::new(
            std::ptr::from_ref::<Json<'a>>(*self) as usize,
        ))
    }
}

pub struct MembersIter<'a>(std::slice::Iter<'a, (Cow<'a, str>, Json<'a>)>);

impl<'a> Iterator for MembersIter<'a> {
    type Item = (&'a str, &'a Json<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'a> jsonschema::json::Object<'a, Doc> for ObjRef<'a> {
    type Node = &'a Json<'a>;
    type MemberName = &'a str;
    type MembersIter = MembersIter<'a>;

    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, key: &String) -> Option<&'a Json<'a>> {
        obj_get(self.0, key)
    }
    fn members(&self) -> MembersIter<'a> {
        MembersIter(self.0.iter())
    }
}

impl<'a> jsonschema::json::Array<'a, Doc> for ArrRef<'a> {
    type Node = &'a Json<'a>;
    type ElementsIter = std::slice::Iter<'a, Json<'a>>;

    fn len(&self) -> usize {
        self.0.len()
    }
    fn elements(&self) -> std::slice::Iter<'a, Json<'a>> {
        self.0.iter()
    }
}
