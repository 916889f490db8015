//! Validation stage: JSON Schema checks with the `jsonschema` crate, compiled once per plan.
//! Used for optional source schemas and for every canonical entity (whose schema comes from
//! the pydantic model, so Python stays the single source of truth). Documents are validated
//! in their decoded form (`json::Doc`), without conversion.

use jsonschema::Validator;
use serde_json::Value;

use crate::error::truncate_detail;
use crate::json::{Doc, Json};

pub struct SchemaCheck {
    validator: Validator<Doc>,
}

impl SchemaCheck {
    pub fn compile(schema: &Value) -> Result<SchemaCheck, String> {
        jsonschema::options_for::<Doc>()
            .should_validate_formats(true)
            .build(schema)
            .map(|validator| SchemaCheck { validator })
            .map_err(|e| e.to_string())
    }

    /// `Ok` when valid, else the first error as `"<instance path>: <message>"`.
    #[inline(never)] // a frame of its own for `scripts/profile-e2e` (see `decode::decode`)
    pub fn check(&self, instance: &Json<'_>) -> Result<(), String> {
        // `is_valid` short-circuits without building errors: the common case stays cheap.
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        match self.validator.validate(instance) {
            Ok(()) => Ok(()),
            Err(e) => {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                Err(format!("{path}: {}", truncate_detail(e.to_string(), 300)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Limits};
    use serde_json::json;

    fn check(s: &SchemaCheck, doc: &str) -> Result<(), String> {
        let obj = decode(doc.as_bytes(), &Limits::default()).expect("decodes");
        s.check(&Json::Obj(obj))
    }

    #[test]
    fn reports_path_of_first_error() {
        let s = SchemaCheck::compile(&json!({
            "type": "object",
            "properties": {
                "q": {"type": "number", "minimum": 0},
                "n": {"type": "integer"},
                "t": {"type": "string", "format": "date-time"},
                "e": {"enum": ["a", 1]},
                "c": {"const": "x"}
            },
            "required": ["q"],
            "additionalProperties": false
        }))
        .expect("compiles");
        assert_eq!(check(&s, r#"{"q": 1}"#), Ok(()));
        assert_eq!(check(&s, r#"{"q": 1.5, "n": 3, "e": 1, "c": "x"}"#), Ok(()));
        let err = check(&s, r#"{"q": -1}"#).expect_err("negative");
        assert!(err.starts_with("/q: "), "{err}");
        assert!(check(&s, "{}").is_err());
        assert!(check(&s, r#"{"q": 1, "t": "not a time"}"#).is_err());
        assert!(check(&s, r#"{"q": 1, "n": 1.5}"#).is_err());
        assert!(check(&s, r#"{"q": 1, "e": "b"}"#).is_err());
        assert!(check(&s, r#"{"q": 1, "c": "y"}"#).is_err());
        assert!(check(&s, r#"{"q": 1, "zzz": 0}"#).is_err());
        assert_eq!(
            check(&s, r#"{"q": 1, "t": "2026-11-27T08:15:02Z"}"#),
            Ok(())
        );
    }

    #[test]
    fn bad_schema_does_not_compile() {
        assert!(SchemaCheck::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
