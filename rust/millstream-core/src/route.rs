//! Routing stage: NATS subject wildcard matching, CEL predicates over the canonical entity,
//! and the token rule for destination subjects.

use std::sync::Arc;

use crate::json::{obj_get, Json, Obj};
use crate::template::RenderError;
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::Key;
use cel::{Context, Program, Value as CelValue};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(String),
    One,
    Rest,
}

/// A NATS subject pattern: `*` matches one token, `>` one or more trailing tokens.
#[derive(Clone, Debug)]
pub struct SubjectPattern {
    toks: Vec<Tok>,
}

impl SubjectPattern {
    pub fn parse(p: &str) -> SubjectPattern {
        SubjectPattern {
            toks: p
                .split('.')
                .map(|t| match t {
                    "*" => Tok::One,
                    ">" => Tok::Rest,
                    _ => Tok::Lit(t.to_owned()),
                })
                .collect(),
        }
    }

    pub fn matches(&self, subject: &str) -> bool {
        let mut it = subject.split('.');
        for tok in &self.toks {
            match (tok, it.next()) {
                (_, None) => return false,
                (Tok::Rest, Some(_)) => return true,
                (Tok::One, Some(_)) => {}
                (Tok::Lit(l), Some(s)) => {
                    if l != s {
                        return false;
                    }
                }
            }
        }
        it.next().is_none()
    }
}

pub fn any_match(patterns: &[SubjectPattern], subject: &str) -> bool {
    patterns.iter().any(|p| p.matches(subject))
}

/// The bytes a subject token may hold, `[A-Za-z0-9_-]`, as a table: one load per byte where
/// the three range tests cost several instructions each on every destination (event-cost).
const TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        b += 1;
    }
    t
};

/// Destination subjects are built from event data; each rendered token must be 1 to 64 of
/// `[A-Za-z0-9_-]` so no event can inject a wildcard, an extra token or an empty token.
pub fn check_subject_token(rendered: &str, path: &[String]) -> Result<(), RenderError> {
    let ok = !rendered.is_empty()
        && rendered.len() <= 64
        && rendered.bytes().all(|b| TOKEN_BYTE[usize::from(b)]);
    if ok {
        Ok(())
    } else {
        Err(RenderError::NotScalar(format!(
            "{} = {:?} is not a safe subject token ([A-Za-z0-9_-]{{1,64}})",
            path.join("."),
            rendered.chars().take(80).collect::<String>()
        )))
    }
}

/// A compiled CEL predicate. Canonical fields are top-level variables (`priority >= 2`);
/// `event` is the whole entity and `input_subject` the subject the event arrived on.
pub struct Predicate {
    program: Program,
}

impl Predicate {
    pub fn compile(src: &str) -> Result<Predicate, String> {
        Program::compile(src)
            .map(|program| Predicate { program })
            .map_err(|e| e.to_string())
    }

    pub fn eval(
        &self,
        root: &Context<'_, '_>,
        data: &Obj<'_>,
        input_subject: &str,
    ) -> Result<bool, String> {
        let vars = EventVars {
            data,
            input_subject,
        };
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(&vars);
        match self.program.execute(&ctx) {
            Ok(CelValue::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("predicate gave {other:?}, not a bool")),
            Err(e) => Err(e.to_string()),
        }
    }
}

struct EventVars<'a> {
    data: &'a Obj<'a>,
    input_subject: &'a str,
}

impl VariableResolver for EventVars<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        // Only the names a predicate uses are converted, and only when it runs.
        let v = match (obj_get(self.data, name), name) {
            (Some(v), _) => to_cel(v),
            (None, "event") => CelValue::Map(
                self.data
                    .iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.to_string())), to_cel(v)))
                    .collect::<std::collections::HashMap<_, _>>()
                    .into(),
            ),
            (None, "input_subject") => CelValue::String(Arc::new(self.input_subject.to_owned())),
            (None, _) => return None,
        };
        let boxed: Box<dyn Val> = v.try_into().ok()?;
        Some(CowVal::Owned(boxed))
    }
}

fn to_cel(v: &Json<'_>) -> CelValue {
    match v {
        Json::Null => CelValue::Null,
        Json::Bool(b) => CelValue::Bool(*b),
        Json::Int(i) => CelValue::Int(*i),
        Json::UInt(u) => CelValue::UInt(*u),
        Json::Float(f) => CelValue::Float(*f),
        Json::Str(s) => CelValue::String(Arc::new(s.to_string())),
        Json::Arr(a) => CelValue::List(Arc::new(a.iter().map(to_cel).collect())),
        Json::Obj(m) => CelValue::Map(
            m.iter()
                .map(|(k, v)| (Key::String(Arc::new(k.to_string())), to_cel(v)))
                .collect::<std::collections::HashMap<_, _>>()
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_wildcards() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.x.c", true),
            ("a.*.c", "a.x.y.c", false),
            ("a.>", "a.x.y", true),
            ("a.>", "a", false),
            (">", "anything.at.all", true),
            ("a.b", "a.b.c", false),
            ("a.b.c", "a.b", false),
            ("mes.*.*.telemetry", "mes.plant-a.press-07.telemetry", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(SubjectPattern::parse(p).matches(s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn subject_tokens_are_restricted() {
        let p = ["f".to_owned()];
        for ok in ["press-07", "A_1", &"x".repeat(64)] {
            assert!(check_subject_token(ok, &p).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a.b",
            "*",
            ">",
            "a b",
            "é",
            &"x".repeat(65),
            "a\r\nPUB x",
        ] {
            assert!(check_subject_token(bad, &p).is_err(), "{bad}");
        }
    }

    #[test]
    fn predicates_see_canonical_fields() {
        let root = Context::default();
        let bytes = br#"{"priority": 3, "status": "open", "tags": ["a"]}"#;
        let data =
            crate::decode::decode(bytes, &crate::decode::Limits::default()).expect("decodes");
        let eval = |src: &str| {
            Predicate::compile(src)
                .expect("compiles")
                .eval(&root, &data, "odoo.x")
        };
        assert_eq!(eval("priority >= 2 && status == 'open'"), Ok(true));
        assert_eq!(eval("event.priority < 2"), Ok(false));
        assert_eq!(eval("input_subject.startsWith('odoo.')"), Ok(true));
        assert_eq!(eval("'a' in tags"), Ok(true));
        assert!(eval("priority + 1").is_err());
        assert!(eval("no_such_field > 1").is_err());
        assert!(Predicate::compile("priority >>> 2").is_err());
    }
}
