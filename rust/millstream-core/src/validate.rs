//! Validation stage: JSON Schema checks with the `jsonschema` crate, compiled once per plan.
//! Used for optional source schemas and for every canonical entity (whose schema comes from
//! the pydantic model, so Python stays the single source of truth).

use jsonschema::Validator;
use serde_json::Value;

pub struct SchemaCheck {
    validator: Validator,
}

impl SchemaCheck {
    pub fn compile(schema: &Value) -> Result<SchemaCheck, String> {
        jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map(|validator| SchemaCheck { validator })
            .map_err(|e| e.to_string())
    }

    /// `Ok` when valid, else the first error as `"<instance path>: <message>"`.
    pub fn check(&self, instance: &Value) -> Result<(), String> {
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
                let mut msg = e.to_string();
                if msg.len() > 300 {
                    let mut end = 297;
                    while !msg.is_char_boundary(end) {
                        end -= 1;
                    }
                    msg.truncate(end);
                    msg.push_str("...");
                }
                Err(format!("{path}: {msg}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_path_of_first_error() {
        let s = SchemaCheck::compile(&json!({
            "type": "object",
            "properties": {"q": {"type": "number", "minimum": 0}, "t": {"type": "string", "format": "date-time"}},
            "required": ["q"]
        }))
        .expect("compiles");
        assert_eq!(s.check(&json!({"q": 1})), Ok(()));
        let err = s.check(&json!({"q": -1})).expect_err("negative");
        assert!(err.starts_with("/q: "), "{err}");
        assert!(s.check(&json!({})).is_err());
        assert!(s.check(&json!({"q": 1, "t": "not a time"})).is_err());
    }

    #[test]
    fn bad_schema_does_not_compile() {
        assert!(SchemaCheck::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
