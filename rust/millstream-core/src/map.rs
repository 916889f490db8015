//! Mapping stage: source payload -> canonical entity, per the mapping's field specs.
//!
//! Each field: take the input (path, template or constant); under the Odoo profile `false`
//! means empty and a many2one `[id, "name"]` yields the chosen part; then value map, cast,
//! unit conversion, default. A field left empty becomes `null`; whether that is allowed is for
//! the canonical JSON Schema to say.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use crate::error::{truncate_detail, PlanError, Reason, Rejection};
use crate::json::{key_text, lookup, write_value, Found, Json, Obj, Scalar};
use crate::plan::{FieldSpec, FieldType, Many2onePart, Profile, TimestampFormat, UnitEntry};
use crate::template::Template;

type UnitTable = HashMap<String, UnitEntry>;
// Per-event lookups use hashbrown's default (foldhash) rather than std's SipHash.
type FastMap<V> = hashbrown::HashMap<String, V>;

enum Input {
    Path(Vec<String>),
    Template(Template),
    Const(Json<'static>),
}

enum UnitFrom {
    Path(Vec<String>),
    Fixed(String),
}

struct Convert {
    table: usize,
    from: UnitFrom,
}

struct FieldPlan {
    name: String,
    input: Input,
    ty: FieldType,
    format: TimestampFormat,
    many2one: Many2onePart,
    map: Option<FastMap<Json<'static>>>,
    map_default: Option<Json<'static>>,
    convert: Option<Convert>,
    unit_name: Option<usize>,
    default: Option<Json<'static>>,
}

/// A compiled mapping for one source profile.
pub struct Mapper {
    profile: Profile,
    fields: Vec<FieldPlan>,
    /// Field `i`'s key as JSON text (`{"name":` or `,"name":`), for `write_entity`.
    keys: Vec<Box<[u8]>>,
    tables: Vec<FastMap<UnitEntry>>,
}

/// Config values (constants, value-map results) in the decoded-document form.
fn json_of(v: &Value) -> Json<'static> {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Json::Int(i),
            (None, Some(u)) => Json::UInt(u),
            _ => Json::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Json::Str(Cow::Owned(s.clone())),
        Value::Array(a) => Json::Arr(a.iter().map(json_of).collect()),
        Value::Object(o) => Json::Obj(
            o.iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), json_of(v)))
                .collect(),
        ),
    }
}

impl Mapper {
    pub fn compile(
        mapping: &str,
        specs: &[FieldSpec],
        profile: Profile,
        units: &HashMap<String, UnitTable>,
    ) -> Result<Mapper, PlanError> {
        let mut tables: Vec<FastMap<UnitEntry>> = Vec::new();
        let mut table_names: Vec<&str> = Vec::new();
        let mut table = |name: &str, at: &str| -> Result<usize, PlanError> {
            if let Some(i) = table_names.iter().position(|n| *n == name) {
                return Ok(i);
            }
            let (k, t) = units
                .get_key_value(name)
                .ok_or_else(|| PlanError::Invalid {
                    at: at.to_owned(),
                    detail: format!("no unit table {name:?}"),
                })?;
            tables.push(t.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            table_names.push(k.as_str());
            Ok(tables.len() - 1)
        };
        let mut fields = Vec::with_capacity(specs.len());
        for s in specs {
            let at = format!("mapping {mapping} field {}", s.name);
            let input = match (&s.path, &s.template, s.has_const) {
                (Some(p), None, false) => Input::Path(p.clone()),
                (None, Some(t), false) => Input::Template(Template::compile(t)?),
                (None, None, true) => {
                    Input::Const(json_of(s.const_.as_ref().unwrap_or(&Value::Null)))
                }
                _ => {
                    return Err(PlanError::Invalid {
                        at,
                        detail: "exactly one of path, template, const".into(),
                    })
                }
            };
            let convert = match &s.convert {
                None => None,
                Some(c) => Some(Convert {
                    table: table(&c.table, &at)?,
                    from: match (&c.from_path, &c.from_unit) {
                        (Some(p), None) => UnitFrom::Path(p.clone()),
                        (None, Some(u)) => UnitFrom::Fixed(u.clone()),
                        _ => {
                            return Err(PlanError::Invalid {
                                at,
                                detail: "convert needs exactly one of from_path, from".into(),
                            })
                        }
                    },
                }),
            };
            let unit_name = match &s.unit_name {
                Some(t) => Some(table(t, &at)?),
                None => None,
            };
            fields.push(FieldPlan {
                name: s.name.clone(),
                input,
                ty: s.ty,
                format: s.format,
                many2one: s.many2one,
                map: s
                    .map
                    .as_ref()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), json_of(v))).collect()),
                map_default: s
                    .has_map_default
                    .then(|| json_of(s.map_default.as_ref().unwrap_or(&Value::Null))),
                convert,
                unit_name,
                default: s
                    .has_default
                    .then(|| json_of(s.default.as_ref().unwrap_or(&Value::Null))),
            });
        }
        // Sorted by name, fields are appended to the entity's BTreeMap in key order.
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        let keys = fields
            .iter()
            .enumerate()
            .map(|(i, f)| key_text(i == 0, &f.name))
            .collect();
        Ok(Mapper {
            profile,
            fields,
            keys,
            tables,
        })
    }

    /// Where field `name` is in every entity `apply` builds (they hold the mapping's fields in
    /// one fixed order), so later stages can read it without searching.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// What a buffer needs beyond the entity's JSON length so that `write_entity` never grows
    /// it: before writing a string the writer reserves room for its worst-case escaping (six
    /// bytes a character and 35 more), so it regrew a buffer sized to the entity's length
    /// alone near its end, once per event (a copy and a second allocation).
    pub fn write_room(entity: &Obj<'_>) -> usize {
        let longest = entity
            .iter()
            .map(|(_, v)| match v {
                Json::Str(s) => s.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        5 * longest + 64
    }

    /// Append an entity that `apply` built as JSON, byte for byte as `write_json` writes it.
    /// The keys are the mapping's field names, in `fields` order, so their JSON text was
    /// written once at compile time; per event only the values are: the generic serializer
    /// spent about a tenth of the pipeline's instructions on telemetry (scripts/event-cost).
    #[inline(never)] // a frame of its own for `scripts/profile-e2e` (see `decode::decode`)
    pub fn write_entity(&self, out: &mut Vec<u8>, entity: &Obj<'_>) -> Result<(), String> {
        if entity.len() != self.keys.len() {
            return Err(format!(
                "an entity of {} fields from a mapping of {}",
                entity.len(),
                self.keys.len()
            ));
        }
        if entity.is_empty() {
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        for (key, (_, v)) in self.keys.iter().zip(entity) {
            out.extend_from_slice(key);
            write_value(out, v)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// Build the canonical entity from a decoded payload. Field names borrow from the
    /// mapping and unescaped strings from the payload, so an entity costs little to build.
    #[inline(never)] // a frame of its own for `scripts/profile-e2e` (see `decode::decode`)
    pub fn apply<'e>(&'e self, src: &Obj<'e>) -> Result<Obj<'e>, Rejection> {
        let mut out = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let v = self.field(f, src).map_err(|mut r| {
                r.detail = format!("{}: {}", f.name, r.detail);
                r
            })?;
            out.push((Cow::Borrowed(f.name.as_str()), v));
        }
        Ok(out)
    }

    /// Empty under this profile: null, missing, or Odoo's `false` for a non-boolean field.
    fn empty(&self, v: Option<&Json<'_>>, ty: FieldType) -> bool {
        match v {
            None | Some(Json::Null) => true,
            Some(Json::Bool(false)) => {
                self.profile == Profile::OdooWebhook && ty != FieldType::Boolean
            }
            _ => false,
        }
    }

    fn many2one<'b, 'a>(&self, v: &'b Json<'a>, part: Many2onePart) -> &'b Json<'a> {
        if self.profile != Profile::OdooWebhook {
            return v;
        }
        match v {
            Json::Arr(a) => match a.as_slice() {
                [id @ (Json::Int(_) | Json::UInt(_)), name @ Json::Str(_)] => match part {
                    Many2onePart::Id => id,
                    Many2onePart::Name => name,
                },
                _ => v,
            },
            _ => v,
        }
    }

    fn default_of<'e>(f: &FieldPlan) -> Json<'e> {
        f.default.clone().unwrap_or(Json::Null)
    }

    fn field<'e>(&'e self, f: &'e FieldPlan, src: &Obj<'e>) -> Result<Json<'e>, Rejection> {
        let rendered;
        let raw: Option<&Json<'e>> = match &f.input {
            Input::Path(p) => lookup(src, p),
            Input::Const(c) => Some(c),
            Input::Template(t) => {
                rendered = t
                    .render(
                        |_, p| match lookup(src, p) {
                            Some(v) if !self.empty(Some(v), FieldType::String) => v.scalar(),
                            _ => Found::Missing,
                        },
                        |_, _| Ok(()),
                    )
                    .ok()
                    .map(|s| Json::Str(Cow::Owned(s)));
                rendered.as_ref()
            }
        };
        if self.empty(raw, f.ty) {
            return Ok(Self::default_of(f));
        }
        let Some(raw) = raw else {
            return Ok(Json::Null);
        };
        let mut v = self.many2one(raw, f.many2one);
        if let Some(map) = &f.map {
            let key = scalar_key(v).ok_or_else(|| {
                Rejection::new(Reason::TypeMismatch, "a value map needs a scalar")
            })?;
            let mapped = match (map.get(key.as_ref()), &f.map_default) {
                (Some(m), _) => m,
                (None, Some(d)) => d,
                (None, None) => {
                    return Err(Rejection::new(
                        Reason::UnmappedValue,
                        format!("no mapping for {key:?}"),
                    ))
                }
            };
            if matches!(mapped, Json::Null) {
                return Ok(Self::default_of(f));
            }
            v = mapped;
        }
        let mut out = cast(v, f.ty, f.format)?;
        if let Some(c) = &f.convert {
            let unit = match &c.from {
                UnitFrom::Fixed(u) => Some(Cow::Borrowed(u.as_str())),
                UnitFrom::Path(p) => lookup(src, p)
                    .filter(|u| !self.empty(Some(u), FieldType::String))
                    .map(|u| self.many2one(u, Many2onePart::Id))
                    .and_then(scalar_key),
            };
            let unit = unit.ok_or_else(|| Rejection::new(Reason::UnknownUnit, "no unit given"))?;
            let entry = self.tables[c.table].get(unit.as_ref()).ok_or_else(|| {
                Rejection::new(Reason::UnknownUnit, format!("unknown unit {unit:?}"))
            })?;
            let x = number(&out).ok_or_else(|| {
                Rejection::new(Reason::TypeMismatch, "unit conversion needs a number")
            })?;
            out = float(x * entry.factor + entry.offset)?;
        }
        if let Some(t) = f.unit_name {
            let key = scalar_key(v)
                .ok_or_else(|| Rejection::new(Reason::UnknownUnit, "unit is not a scalar"))?;
            let entry = self.tables[t].get(key.as_ref()).ok_or_else(|| {
                Rejection::new(Reason::UnknownUnit, format!("unknown unit {key:?}"))
            })?;
            out = Json::Str(Cow::Borrowed(entry.to.as_str()));
        }
        Ok(out)
    }
}

fn scalar_key<'b>(v: &'b Json<'_>) -> Option<Cow<'b, str>> {
    match v.scalar() {
        Found::Scalar(Scalar::Str(s)) => Some(Cow::Borrowed(s)),
        Found::Scalar(s) => Some(s.to_cow()),
        _ => None,
    }
}

fn float<'e>(x: f64) -> Result<Json<'e>, Rejection> {
    if x.is_finite() {
        Ok(Json::Float(x))
    } else {
        Err(Rejection::new(
            Reason::TypeMismatch,
            "result is not a finite number",
        ))
    }
}

fn shown(v: &Json<'_>) -> String {
    truncate_detail(v.to_value().to_string(), 64)
}

fn mismatch(v: &Json<'_>, ty: &str) -> Rejection {
    Rejection::new(Reason::TypeMismatch, format!("{} is not {ty}", shown(v)))
}

/// Typed coercion of one value. Strings stay borrowed from the payload where they were.
pub fn cast<'e>(
    v: &Json<'e>,
    ty: FieldType,
    format: TimestampFormat,
) -> Result<Json<'e>, Rejection> {
    match ty {
        FieldType::String => match v {
            Json::Str(s) => Ok(Json::Str(s.clone())),
            Json::Int(_) | Json::UInt(_) | Json::Float(_) | Json::Bool(_) => Ok(Json::Str(
                Cow::Owned(scalar_key(v).map(Cow::into_owned).unwrap_or_default()),
            )),
            _ => Err(mismatch(v, "a string")),
        },
        FieldType::Integer => match v {
            Json::Int(_) | Json::UInt(_) => Ok(v.clone()),
            Json::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Json::Int(*f as i64)),
            Json::Str(s) => s
                .trim()
                .parse::<i64>()
                .map(Json::Int)
                .map_err(|_| mismatch(v, "an integer")),
            _ => Err(mismatch(v, "an integer")),
        },
        FieldType::Number => match v {
            Json::Int(i) => float(*i as f64),
            Json::UInt(u) => float(*u as f64),
            Json::Float(f) => float(*f),
            Json::Str(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => float(f),
                _ => Err(mismatch(v, "a number")),
            },
            _ => Err(mismatch(v, "a number")),
        },
        FieldType::Boolean => match v {
            Json::Bool(b) => Ok(Json::Bool(*b)),
            Json::Str(s) if s == "true" => Ok(Json::Bool(true)),
            Json::Str(s) if s == "false" => Ok(Json::Bool(false)),
            _ => Err(mismatch(v, "a boolean")),
        },
        FieldType::Timestamp => timestamp(v, format).map(|t| Json::Str(Cow::Owned(rfc3339(&t)))),
    }
}

/// `t.to_rfc3339_opts(SecondsFormat::AutoSi, true)`, byte for byte, written directly: chrono
/// formats through `core::fmt`, which was 2-3% of the router on telemetry (every sample has a
/// timestamp). Four-digit years only; a year needing a sign, or a leap second, goes to
/// chrono.
fn rfc3339(t: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // The fields are read from the naive UTC time: each accessor of a `DateTime` first
    // applies its offset (zero here), seven times per timestamp.
    let utc = t.naive_utc();
    let year = utc.year();
    let nanos = utc.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // leap second or a year needing a sign: chrono's own rules
        return t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    }
    let mut b = [0u8; 30];
    let mut put = |at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, utc.month(), 2);
    put(8, utc.day(), 2);
    put(11, utc.hour(), 2);
    put(14, utc.minute(), 2);
    put(17, utc.second(), 2);
    let (digits, frac) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (3, nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        (6, nanos / 1_000)
    } else {
        (9, nanos)
    };
    let mut end = 19;
    if digits > 0 {
        put(20, frac, digits);
        b[19] = b'.';
        end = 20 + digits;
    }
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (end, b'Z'),
    ] {
        b[at] = c;
    }
    // ASCII digits and separators only, so the check cannot fail; the lossy conversion it
    // replaced walked the bytes in UTF-8 chunks (4% of the map stage in a profile)
    std::str::from_utf8(&b[..=end])
        .map(str::to_owned)
        .unwrap_or_default()
}

fn bad_time(v: &Json<'_>, why: &str) -> Rejection {
    Rejection::new(Reason::InvalidTimestamp, format!("{}: {why}", shown(v)))
}

fn from_epoch_ms(ms: f64, v: &Json<'_>) -> Result<DateTime<Utc>, Rejection> {
    // Within year 1970..=9999 keeps every result RFC 3339-representable.
    if !(0.0..253_402_300_800_000.0).contains(&ms) {
        return Err(bad_time(v, "epoch time out of range"));
    }
    let whole = ms.floor();
    let micros = ((ms - whole) * 1e3).round() as i64;
    DateTime::from_timestamp_millis(whole as i64)
        .map(|t| t + chrono::Duration::microseconds(micros))
        .ok_or_else(|| bad_time(v, "epoch time out of range"))
}

fn number(v: &Json<'_>) -> Option<f64> {
    match v {
        Json::Int(i) => Some(*i as f64),
        Json::UInt(u) => Some(*u as f64),
        Json::Float(f) => Some(*f),
        _ => None,
    }
}

/// Parse a timestamp into UTC. Odoo sends naive `YYYY-MM-DD HH:MM:SS` that is always UTC.
pub fn timestamp(v: &Json<'_>, format: TimestampFormat) -> Result<DateTime<Utc>, Rejection> {
    use TimestampFormat as F;
    if let Some(n) = number(v) {
        return match format {
            F::Auto | F::EpochMs => from_epoch_ms(n, v),
            F::EpochS => from_epoch_ms(n * 1000.0, v),
            F::Rfc3339 | F::Odoo => Err(bad_time(v, "expected a string timestamp")),
        };
    }
    let Json::Str(s) = v else {
        return Err(bad_time(v, "not a timestamp"));
    };
    match format {
        F::Rfc3339 => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| bad_time(v, &e.to_string())),
        F::Odoo => odoo_datetime(s).ok_or_else(|| bad_time(v, "expected YYYY-MM-DD HH:MM:SS")),
        F::Auto => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| odoo_datetime(s))
            .ok_or_else(|| bad_time(v, "not RFC 3339 nor YYYY-MM-DD[ HH:MM:SS]")),
        F::EpochMs | F::EpochS => {
            let n: f64 = s
                .trim()
                .parse()
                .map_err(|_| bad_time(v, "not an epoch number"))?;
            let scale = if format == F::EpochS { 1000.0 } else { 1.0 };
            from_epoch_ms(n * scale, v)
        }
    }
}

/// Odoo's naive UTC `YYYY-MM-DD HH:MM:SS[.ffffff]` (or a bare date).
///
/// Fixed positions, parsed by hand: chrono's `parse_from_str` interprets its format string on
/// every call and was the largest cost of mapping an Odoo record. chrono still validates the
/// calendar (`from_ymd_opt`, `and_hms_micro_opt`), and a test checks agreement with chrono.
fn odoo_datetime(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<u32> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    if b.len() == 10 {
        return date.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    if b.len() < 19 || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let micros = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let n = num(20, b.len())?;
            // Scale to 6 digits: ".5" is 500000 us; beyond 6 digits, truncate.
            let len = frac.len() as u32;
            if len <= 6 {
                n * 10u32.pow(6 - len)
            } else {
                n / 10u32.pow(len - 6)
            }
        }
        _ => return None,
    };
    date.and_hms_micro_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, micros)
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;
    use serde_json::json;

    #[test]
    fn rfc3339_writes_what_chrono_writes() {
        let mut rng = crate::test_rng(7);
        let mut times: Vec<DateTime<Utc>> = vec![
            DateTime::from_timestamp(0, 0).expect("epoch"),
            DateTime::from_timestamp(253_402_300_799, 999_999_999).expect("year 9999"),
            DateTime::from_timestamp(1_795_767_302, 123_000_000).expect("ms"),
            DateTime::from_timestamp(1_795_767_302, 123_456_000).expect("us"),
            DateTime::from_timestamp(1_795_767_302, 123_456_789).expect("ns"),
            DateTime::from_timestamp(1_795_767_299, 1_500_000_000).expect("leap second"),
            DateTime::from_timestamp(-62_135_596_800 - 86_400, 0).expect("year 0"),
        ];
        for _ in 0..20_000 {
            let secs = (rng() % 253_402_300_800) as i64;
            let nanos = match rng() % 4 {
                0 => 0,
                1 => (rng() % 1000) as u32 * 1_000_000,
                2 => (rng() % 1_000_000) as u32 * 1_000,
                _ => (rng() % 1_000_000_000) as u32,
            };
            times.push(DateTime::from_timestamp(secs, nanos).expect("in range"));
        }
        for t in times {
            assert_eq!(rfc3339(&t), t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }

    fn spec(v: Value) -> FieldSpec {
        let mut base = json!({
            "name": "f", "path": null, "template": null, "const": null, "has_const": false,
            "type": "string", "format": "auto", "many2one": "id", "map": null,
            "map_default": null, "has_map_default": false, "convert": null, "unit_name": null,
            "default": null, "has_default": false
        });
        if let (Value::Object(b), Value::Object(o)) = (&mut base, v) {
            b.extend(o);
        }
        serde_json::from_value(base).expect("field spec")
    }

    fn units() -> HashMap<String, UnitTable> {
        serde_json::from_value(json!({
            "uom": {"1": {"to": "unit", "factor": 1.0, "offset": 0.0},
                    "2": {"to": "unit", "factor": 12.0, "offset": 0.0}},
            "temp": {"degF": {"to": "degC", "factor": 0.5555555555555556, "offset": -17.77777777777778},
                     "degC": {"to": "degC", "factor": 1.0, "offset": 0.0}}
        }))
        .expect("units")
    }

    fn run(profile: Profile, field: Value, src: Value) -> Result<Value, Reason> {
        let m = Mapper::compile("m", &[spec(field)], profile, &units()).expect("compiles");
        let bytes = serde_json::to_vec(&src).expect("serialises");
        let src =
            crate::decode::decode(&bytes, &crate::decode::Limits::default()).expect("decodes");
        m.apply(&src)
            .map(|o| {
                o.into_iter()
                    .next()
                    .map_or(Value::Null, |(_, v)| v.to_value())
            })
            .map_err(|r| r.reason)
    }

    #[test]
    fn write_entity_writes_what_write_json_writes() {
        // Field names that need escaping, and values of every kind an entity holds.
        let names = [
            "plain",
            "quo\"te",
            "back\\slash",
            "tab\tbed",
            "ünï",
            "",
            "z_null",
        ];
        let specs: Vec<FieldSpec> = names
            .iter()
            .map(|n| spec(json!({"name": n, "path": ["x"]})))
            .collect();
        let m = Mapper::compile("m", &specs, Profile::Json, &units()).expect("compiles");
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        let mut rng = crate::test_rng(11);
        let mut pick = || -> Json<'static> {
            let r = rng();
            match r % 8 {
                0 => Json::Null,
                1 => Json::Bool(r.is_multiple_of(2)),
                2 => Json::Int((r as i64).wrapping_sub(1 << 62)),
                3 => Json::UInt(r),
                4 => Json::Float((r % 1_000_000) as f64 / 7.0),
                5 => Json::Float(f64::from_bits(r)), // any f64, NaN and infinities too
                6 => Json::Str(Cow::Owned(format!("s\"\\\n\u{1}é{r}"))),
                _ => Json::Str(Cow::Owned("x".repeat((r % 80) as usize))),
            }
        };
        for _ in 0..5_000 {
            let entity: Obj<'_> = sorted.iter().map(|n| (Cow::Borrowed(*n), pick())).collect();
            let mut fast = Vec::new();
            m.write_entity(&mut fast, &entity).expect("writes");
            // a buffer of the JSON's length plus `write_room` is never regrown
            let mut sized = Vec::with_capacity(fast.len() + Mapper::write_room(&entity));
            let capacity = sized.capacity();
            m.write_entity(&mut sized, &entity).expect("writes");
            assert_eq!(sized.capacity(), capacity, "regrown for {entity:?}");
            let mut slow = Vec::new();
            crate::json::write_json(&mut slow, &Json::Obj(entity)).expect("writes");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
        }
        let empty = Mapper::compile("m", &[], Profile::Json, &units()).expect("compiles");
        let mut out = Vec::new();
        empty.write_entity(&mut out, &Vec::new()).expect("writes");
        assert_eq!(out, b"{}");
        assert!(m.write_entity(&mut out, &Vec::new()).is_err());
    }

    #[test]
    fn odoo_datetimes_agree_with_chrono() {
        let good = [
            "2026-11-27 08:15:02",
            "2026-11-27 08:15:02.204517",
            "2026-11-27 08:15:02.5",
            "2024-02-29 23:59:59",
            "2026-01-01",
        ];
        for s in good {
            let ours = odoo_datetime(s).expect(s);
            let chrono = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_time(Default::default()))
                })
                .expect(s)
                .and_utc();
            assert_eq!(ours, chrono, "{s}");
        }
        let bad = [
            "2026-02-30 08:15:02",
            "2026-11-27 24:00:00",
            "2026-11-27T08:15:02",
            "2026-11-27 08:15",
            "2026-11-27 08:15:02.",
            "2026-11-27 08:15:02Z",
            "26-11-27",
            "2026-1a-27",
            "",
        ];
        for s in bad {
            assert_eq!(odoo_datetime(s), None, "{s}");
        }
    }

    #[test]
    fn table_of_field_cases() {
        use Profile::{Json, OdooWebhook as Odoo};
        let cases: Vec<(Profile, Value, Value, Result<Value, Reason>)> = vec![
            (
                Json,
                json!({"path": ["a"]}),
                json!({"a": "x"}),
                Ok(json!("x")),
            ),
            (
                Json,
                json!({"path": ["a"]}),
                json!({"a": 42}),
                Ok(json!("42")),
            ),
            (
                Json,
                json!({"path": ["a", "b"], "type": "integer"}),
                json!({"a": {"b": "7"}}),
                Ok(json!(7)),
            ),
            (
                Json,
                json!({"path": ["a"], "type": "integer"}),
                json!({"a": 7.5}),
                Err(Reason::TypeMismatch),
            ),
            (
                Json,
                json!({"path": ["a"], "type": "number"}),
                json!({"a": "2.5"}),
                Ok(json!(2.5)),
            ),
            (
                Json,
                json!({"path": ["a"], "type": "number"}),
                json!({"a": [1]}),
                Err(Reason::TypeMismatch),
            ),
            (
                Json,
                json!({"path": ["a"], "type": "boolean"}),
                json!({"a": "true"}),
                Ok(json!(true)),
            ),
            (
                Json,
                json!({"path": ["missing"]}),
                json!({}),
                Ok(Value::Null),
            ),
            (
                Json,
                json!({"path": ["missing"], "default": "d", "has_default": true}),
                json!({}),
                Ok(json!("d")),
            ),
            (
                Json,
                json!({"const": "c", "has_const": true}),
                json!({}),
                Ok(json!("c")),
            ),
            (
                Json,
                json!({"template": "{a}-{b}"}),
                json!({"a": "x", "b": 1}),
                Ok(json!("x-1")),
            ),
            // Odoo: false is empty, many2one picks a part
            (
                Odoo,
                json!({"path": ["a"]}),
                json!({"a": false}),
                Ok(Value::Null),
            ),
            (
                Odoo,
                json!({"path": ["a"], "type": "boolean"}),
                json!({"a": false}),
                Ok(json!(false)),
            ),
            (
                Json,
                json!({"path": ["a"]}),
                json!({"a": false}),
                Ok(json!("false")),
            ),
            (
                Odoo,
                json!({"path": ["p"]}),
                json!({"p": [7, "Bolt M8"]}),
                Ok(json!("7")),
            ),
            (
                Odoo,
                json!({"path": ["p"], "many2one": "name"}),
                json!({"p": [7, "Bolt M8"]}),
                Ok(json!("Bolt M8")),
            ),
            (
                Odoo,
                json!({"path": ["p"]}),
                json!({"p": 7}),
                Ok(json!("7")),
            ),
            // value maps
            (
                Odoo,
                json!({"path": ["s"], "map": {"done": "done", "assigned": "reserved"}}),
                json!({"s": "assigned"}),
                Ok(json!("reserved")),
            ),
            (
                Odoo,
                json!({"path": ["s"], "map": {"done": "done"}}),
                json!({"s": "weird"}),
                Err(Reason::UnmappedValue),
            ),
            (
                Odoo,
                json!({"path": ["s"], "map": {"done": "done"}, "map_default": "other", "has_map_default": true}),
                json!({"s": "weird"}),
                Ok(json!("other")),
            ),
            (
                Odoo,
                json!({"path": ["s"], "type": "integer", "map": {"3": 3}}),
                json!({"s": "3"}),
                Ok(json!(3)),
            ),
            // units
            (
                Odoo,
                json!({"path": ["q"], "type": "number", "convert": {"table": "uom", "from_path": ["u"], "from_unit": null}}),
                json!({"q": 2, "u": 2}),
                Ok(json!(24.0)),
            ),
            (
                Odoo,
                json!({"path": ["q"], "type": "number", "convert": {"table": "uom", "from_path": ["u"], "from_unit": null}}),
                json!({"q": 2, "u": [2, "Dozens"]}),
                Ok(json!(24.0)),
            ),
            (
                Odoo,
                json!({"path": ["q"], "type": "number", "convert": {"table": "uom", "from_path": ["u"], "from_unit": null}}),
                json!({"q": 2, "u": 99}),
                Err(Reason::UnknownUnit),
            ),
            (
                Json,
                json!({"path": ["t"], "type": "number", "convert": {"table": "temp", "from_path": null, "from_unit": "degF"}}),
                json!({"t": 212}),
                Ok(json!(100.0)),
            ),
            (
                Odoo,
                json!({"path": ["u"], "unit_name": "uom"}),
                json!({"u": 2}),
                Ok(json!("unit")),
            ),
            (
                Json,
                json!({"path": ["u"], "unit_name": "temp"}),
                json!({"u": "furlong"}),
                Err(Reason::UnknownUnit),
            ),
            // timestamps
            (
                Odoo,
                json!({"path": ["w"], "type": "timestamp"}),
                json!({"w": "2026-11-27 08:15:02"}),
                Ok(json!("2026-11-27T08:15:02Z")),
            ),
            (
                Json,
                json!({"path": ["w"], "type": "timestamp"}),
                json!({"w": "2026-11-27T09:15:02+01:00"}),
                Ok(json!("2026-11-27T08:15:02Z")),
            ),
            (
                Json,
                json!({"path": ["w"], "type": "timestamp"}),
                json!({"w": 1_795_767_302_123u64}),
                Ok(json!("2026-11-27T08:15:02.123Z")),
            ),
            (
                Json,
                json!({"path": ["w"], "type": "timestamp", "format": "epoch_s"}),
                json!({"w": 1_795_767_302}),
                Ok(json!("2026-11-27T08:15:02Z")),
            ),
            (
                Json,
                json!({"path": ["w"], "type": "timestamp"}),
                json!({"w": "2026-11-27"}),
                Ok(json!("2026-11-27T00:00:00Z")),
            ),
            (
                Json,
                json!({"path": ["w"], "type": "timestamp"}),
                json!({"w": "yesterday"}),
                Err(Reason::InvalidTimestamp),
            ),
            (
                Json,
                json!({"path": ["w"], "type": "timestamp", "format": "odoo"}),
                json!({"w": "2026-11-27T08:15:02Z"}),
                Err(Reason::InvalidTimestamp),
            ),
            (
                Json,
                json!({"path": ["w"], "type": "timestamp"}),
                json!({"w": -5}),
                Err(Reason::InvalidTimestamp),
            ),
        ];
        for (i, (profile, field, src, want)) in cases.into_iter().enumerate() {
            let got = run(profile, field.clone(), src.clone());
            assert_eq!(got, want, "case {i}: {field} on {src}");
        }
    }
}
