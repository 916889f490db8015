//! Mapping stage: source payload -> canonical entity, per the mapping's field specs.
//!
//! Each field: take the input (path, template or constant); under the Odoo profile `false`
//! means empty and a many2one `[id, "name"]` yields the chosen part; then value map, cast,
//! unit conversion, default. A field left empty becomes `null`; whether that is allowed is for
//! the canonical JSON Schema to say.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Number, Value};

use crate::error::{PlanError, Reason, Rejection};
use crate::plan::{FieldSpec, FieldType, Many2onePart, Profile, TimestampFormat, UnitEntry};
use crate::template::{lookup_path, Template};

type UnitTable = HashMap<String, UnitEntry>;
// Per-event lookups use hashbrown's default (foldhash) rather than std's SipHash.
type FastMap<V> = hashbrown::HashMap<String, V>;

enum Input {
    Path(Vec<String>),
    Template(Template),
    Const(Value),
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
    map: Option<FastMap<Value>>,
    map_default: Option<Value>,
    convert: Option<Convert>,
    unit_name: Option<usize>,
    default: Option<Value>,
}

/// A compiled mapping for one source profile.
pub struct Mapper {
    profile: Profile,
    fields: Vec<FieldPlan>,
    tables: Vec<FastMap<UnitEntry>>,
}

impl Mapper {
    pub fn compile(
        mapping: &str,
        specs: &[FieldSpec],
        profile: Profile,
        units: &HashMap<String, UnitTable>,
    ) -> Result<Mapper, PlanError> {
        let mut tables: Vec<FastMap<UnitEntry>> = Vec::new();
        let mut table_ix: HashMap<&str, usize> = HashMap::new();
        let mut table = |name: &str, at: &str| -> Result<usize, PlanError> {
            if let Some(&i) = table_ix.get(name) {
                return Ok(i);
            }
            let t = units.get(name).ok_or_else(|| PlanError::Invalid {
                at: at.to_owned(),
                detail: format!("no unit table {name:?}"),
            })?;
            tables.push(t.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            let (k, _) = units
                .get_key_value(name)
                .ok_or_else(|| PlanError::Invalid {
                    at: at.to_owned(),
                    detail: format!("no unit table {name:?}"),
                })?;
            table_ix.insert(k.as_str(), tables.len() - 1);
            Ok(tables.len() - 1)
        };
        let mut fields = Vec::with_capacity(specs.len());
        for s in specs {
            let at = format!("mapping {mapping} field {}", s.name);
            let input = match (&s.path, &s.template, s.has_const) {
                (Some(p), None, false) => Input::Path(p.clone()),
                (None, Some(t), false) => Input::Template(Template::compile(t)?),
                (None, None, true) => Input::Const(s.const_.clone().unwrap_or(Value::Null)),
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
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                map_default: s
                    .has_map_default
                    .then(|| s.map_default.clone().unwrap_or(Value::Null)),
                convert,
                unit_name,
                default: s
                    .has_default
                    .then(|| s.default.clone().unwrap_or(Value::Null)),
            });
        }
        Ok(Mapper {
            profile,
            fields,
            tables,
        })
    }

    /// Build the canonical entity from a decoded payload.
    pub fn apply(&self, src: &Map<String, Value>) -> Result<Map<String, Value>, Rejection> {
        let mut out = Map::new();
        for f in &self.fields {
            let v = self.field(f, src).map_err(|mut r| {
                r.detail = format!("{}: {}", f.name, r.detail);
                r
            })?;
            out.insert(f.name.clone(), v);
        }
        Ok(out)
    }

    /// Empty under this profile: null, missing, or Odoo's `false` for a non-boolean field.
    fn empty(&self, v: Option<&Value>, ty: FieldType) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::Bool(false)) => {
                self.profile == Profile::OdooWebhook && ty != FieldType::Boolean
            }
            _ => false,
        }
    }

    fn many2one<'v>(&self, v: &'v Value, part: Many2onePart) -> &'v Value {
        if self.profile != Profile::OdooWebhook {
            return v;
        }
        match v.as_array().map(Vec::as_slice) {
            Some([id @ Value::Number(_), name @ Value::String(_)]) => match part {
                Many2onePart::Id => id,
                Many2onePart::Name => name,
            },
            _ => v,
        }
    }

    fn field(&self, f: &FieldPlan, src: &Map<String, Value>) -> Result<Value, Rejection> {
        let rendered;
        let raw: Option<&Value> = match &f.input {
            Input::Path(p) => lookup_path(src, p),
            Input::Const(c) => Some(c),
            Input::Template(t) => {
                rendered = t
                    .render(
                        |p| lookup_path(src, p).filter(|v| !self.empty(Some(v), FieldType::String)),
                        |_, _| Ok(()),
                    )
                    .ok()
                    .map(Value::String);
                rendered.as_ref()
            }
        };
        if self.empty(raw, f.ty) {
            return Ok(f.default.clone().unwrap_or(Value::Null));
        }
        let Some(raw) = raw else {
            return Ok(Value::Null);
        };
        let mut v = self.many2one(raw, f.many2one);
        let mapped;
        if let Some(map) = &f.map {
            let key = scalar_key(v).ok_or_else(|| {
                Rejection::new(Reason::TypeMismatch, "a value map needs a scalar")
            })?;
            mapped = match (map.get(key.as_ref()), &f.map_default) {
                (Some(m), _) => m.clone(),
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    return Err(Rejection::new(
                        Reason::UnmappedValue,
                        format!("no mapping for {key:?}"),
                    ))
                }
            };
            if mapped.is_null() {
                return Ok(f.default.clone().unwrap_or(Value::Null));
            }
            v = &mapped;
        }
        let mut out = cast(v, f.ty, f.format)?;
        if let Some(c) = &f.convert {
            let unit = match &c.from {
                UnitFrom::Fixed(u) => Some(std::borrow::Cow::Borrowed(u.as_str())),
                UnitFrom::Path(p) => lookup_path(src, p)
                    .filter(|u| !self.empty(Some(u), FieldType::String))
                    .map(|u| self.many2one(u, Many2onePart::Id))
                    .and_then(scalar_key),
            };
            let unit = unit.ok_or_else(|| Rejection::new(Reason::UnknownUnit, "no unit given"))?;
            let entry = self.tables[c.table].get(unit.as_ref()).ok_or_else(|| {
                Rejection::new(Reason::UnknownUnit, format!("unknown unit {unit:?}"))
            })?;
            let x = out.as_f64().ok_or_else(|| {
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
            out = Value::String(entry.to.clone());
        }
        Ok(out)
    }
}

fn scalar_key(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        })),
        _ => None,
    }
}

fn float(x: f64) -> Result<Value, Rejection> {
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| Rejection::new(Reason::TypeMismatch, "result is not a finite number"))
}

fn mismatch(v: &Value, ty: &str) -> Rejection {
    let mut shown = v.to_string();
    if shown.len() > 64 {
        let mut end = 61;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push_str("...");
    }
    Rejection::new(Reason::TypeMismatch, format!("{shown} is not {ty}"))
}

/// Typed coercion of one value.
pub fn cast(v: &Value, ty: FieldType, format: TimestampFormat) -> Result<Value, Rejection> {
    match ty {
        FieldType::String => match v {
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(mismatch(v, "a string")),
        },
        FieldType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => Err(mismatch(v, "an integer")),
            },
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| mismatch(v, "an integer")),
            _ => Err(mismatch(v, "an integer")),
        },
        FieldType::Number => match v {
            Value::Number(n) => float(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => float(f),
                _ => Err(mismatch(v, "a number")),
            },
            _ => Err(mismatch(v, "a number")),
        },
        FieldType::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) if s == "true" => Ok(Value::Bool(true)),
            Value::String(s) if s == "false" => Ok(Value::Bool(false)),
            _ => Err(mismatch(v, "a boolean")),
        },
        FieldType::Timestamp => timestamp(v, format)
            .map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
    }
}

fn bad_time(v: &Value, why: &str) -> Rejection {
    Rejection::new(Reason::InvalidTimestamp, format!("{v}: {why}"))
}

fn from_epoch_ms(ms: f64, v: &Value) -> Result<DateTime<Utc>, Rejection> {
    // Within year 1970..=9999 keeps every result RFC 3339-representable.
    if !(0.0..253_402_300_800_000.0).contains(&ms) {
        return Err(bad_time(v, "epoch time out of range"));
    }
    let whole = ms.floor();
    let nanos = ((ms - whole) * 1e6).round() as u32 * 1_000;
    DateTime::from_timestamp_millis(whole as i64)
        .map(|t| t + chrono::Duration::nanoseconds(i64::from(nanos)))
        .ok_or_else(|| bad_time(v, "epoch time out of range"))
}

/// Parse a timestamp into UTC. Odoo sends naive `YYYY-MM-DD HH:MM:SS` that is always UTC.
pub fn timestamp(v: &Value, format: TimestampFormat) -> Result<DateTime<Utc>, Rejection> {
    use TimestampFormat as F;
    match (v, format) {
        (Value::Number(n), F::Auto | F::EpochMs) => from_epoch_ms(n.as_f64().unwrap_or(-1.0), v),
        (Value::Number(n), F::EpochS) => from_epoch_ms(n.as_f64().unwrap_or(-1.0) * 1000.0, v),
        (Value::String(s), F::Rfc3339) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| bad_time(v, &e.to_string())),
        (Value::String(s), F::Odoo) => {
            odoo_datetime(s).ok_or_else(|| bad_time(v, "expected YYYY-MM-DD HH:MM:SS"))
        }
        (Value::String(s), F::Auto) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| odoo_datetime(s))
            .ok_or_else(|| bad_time(v, "not RFC 3339 nor YYYY-MM-DD[ HH:MM:SS]")),
        (Value::String(s), F::EpochMs | F::EpochS) => {
            let n: f64 = s
                .trim()
                .parse()
                .map_err(|_| bad_time(v, "not an epoch number"))?;
            let scale = if format == F::EpochS { 1000.0 } else { 1.0 };
            from_epoch_ms(n * scale, v)
        }
        _ => Err(bad_time(v, "not a timestamp")),
    }
}

fn odoo_datetime(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let Value::Object(src) = src else {
            unreachable!("object")
        };
        m.apply(&src)
            .map(|mut o| o.remove("f").unwrap_or(Value::Null))
            .map_err(|r| r.reason)
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
