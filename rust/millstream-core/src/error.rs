//! One error type per layer: `Reason` classifies why an event became a dead letter,
//! `PlanError` why a compiled plan was refused.

use std::fmt;

/// Why an event was rejected. The string form is the dead-letter reason code: stable,
/// documented in `docs/reasons.md`, and used as the last token of the dead-letter subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // decode
    TooLarge,
    EmptyDocument,
    InvalidUtf8,
    MalformedJson,
    TrailingData,
    TooDeep,
    DuplicateKey,
    NonFiniteNumber,
    IntegerOverflow,
    InvalidUnicodeEscape,
    NotAnObject,
    // source selection and validation
    UnknownSource,
    SchemaViolation,
    // mapping
    TypeMismatch,
    UnmappedValue,
    UnknownUnit,
    InvalidTimestamp,
    CanonicalInvalid,
    // routing
    NoRoute,
    PredicateError,
    SubjectRejected,
    KeyMissing,
    // delivery: an at-least-once output was refused or unacknowledged after the last attempt
    OutputFailed,
    // a bug in Millstream, never the sender's fault; caught so it cannot crash the router
    InternalError,
}

impl Reason {
    pub const ALL: [Reason; 24] = [
        Reason::TooLarge,
        Reason::EmptyDocument,
        Reason::InvalidUtf8,
        Reason::MalformedJson,
        Reason::TrailingData,
        Reason::TooDeep,
        Reason::DuplicateKey,
        Reason::NonFiniteNumber,
        Reason::IntegerOverflow,
        Reason::InvalidUnicodeEscape,
        Reason::NotAnObject,
        Reason::UnknownSource,
        Reason::SchemaViolation,
        Reason::TypeMismatch,
        Reason::UnmappedValue,
        Reason::UnknownUnit,
        Reason::InvalidTimestamp,
        Reason::CanonicalInvalid,
        Reason::NoRoute,
        Reason::PredicateError,
        Reason::SubjectRejected,
        Reason::KeyMissing,
        Reason::OutputFailed,
        Reason::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::EmptyDocument => "empty_document",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::MalformedJson => "malformed_json",
            Reason::TrailingData => "trailing_data",
            Reason::TooDeep => "too_deep",
            Reason::DuplicateKey => "duplicate_key",
            Reason::NonFiniteNumber => "non_finite_number",
            Reason::IntegerOverflow => "integer_overflow",
            Reason::InvalidUnicodeEscape => "invalid_unicode_escape",
            Reason::NotAnObject => "not_an_object",
            Reason::UnknownSource => "unknown_source",
            Reason::SchemaViolation => "schema_violation",
            Reason::TypeMismatch => "type_mismatch",
            Reason::UnmappedValue => "unmapped_value",
            Reason::UnknownUnit => "unknown_unit",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::CanonicalInvalid => "canonical_invalid",
            Reason::NoRoute => "no_route",
            Reason::PredicateError => "predicate_error",
            Reason::SubjectRejected => "subject_rejected",
            Reason::KeyMissing => "key_missing",
            Reason::OutputFailed => "output_failed",
            Reason::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected event: the reason code and a human-readable detail for the dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Cut a dead-letter detail to at most `max` bytes (on a char boundary), marking the cut, so
/// a hostile payload cannot make its own dead letter huge.
pub fn truncate_detail(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// A plan the core cannot run. Raised once, when a config is loaded or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan is not valid JSON for this core: {0}")]
    Json(#[from] serde_json::Error),
    #[error("source {source_name}: JSON Schema does not compile: {detail}")]
    SourceSchema { source_name: String, detail: String },
    #[error("mapping {mapping}: canonical JSON Schema does not compile: {detail}")]
    CanonicalSchema { mapping: String, detail: String },
    #[error("route {route}: predicate does not compile: {detail}")]
    Predicate { route: String, detail: String },
    #[error("{at}: {detail}")]
    Invalid { at: String, detail: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_cut_on_char_boundaries() {
        assert_eq!(truncate_detail("short".into(), 10), "short");
        assert_eq!(truncate_detail("abcdefghijkl".into(), 10), "abcdefg...");
        let cut = truncate_detail("ééééééé".into(), 8);
        assert!(cut.len() <= 8 && cut.ends_with("..."), "{cut}");
    }
}
