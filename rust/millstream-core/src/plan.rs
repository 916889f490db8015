//! The compiled plan as the Python control plane emits it (`millstream.config.compile_plan`).
//! These structs mirror that JSON; `Pipeline::new` turns them into runnable stages.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::decode::Limits;

#[derive(Debug, Deserialize)]
pub struct PlanSpec {
    pub name: String,
    pub version: String,
    pub limits: Limits,
    pub dead_letter: DeadLetterSpec,
    #[serde(default)]
    pub units: HashMap<String, HashMap<String, UnitEntry>>,
    pub mappings: HashMap<String, MappingSpec>,
    pub sources: Vec<SourceSpec>,
    pub routes: Vec<RouteSpec>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DeadLetterSpec {
    pub subject_prefix: String,
    pub stream: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UnitEntry {
    pub to: String,
    pub factor: f64,
    pub offset: f64,
}

#[derive(Debug, Deserialize)]
pub struct SourceSpec {
    pub name: String,
    pub subjects: Vec<String>,
    pub profile: Profile,
    pub mapping: String,
    pub schema: Option<Value>,
    pub source_uri: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Json,
    OdooWebhook,
}

#[derive(Debug, Deserialize)]
pub struct MappingSpec {
    pub canonical: String,
    #[serde(rename = "type")]
    pub ce_type: String,
    pub dataschema: String,
    pub schema: Value,
    pub id: Option<String>,
    pub subject: Option<String>,
    pub time: Option<String>,
    pub partitionkey: Option<String>,
    pub fields: Vec<FieldSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    Auto,
    Rfc3339,
    Odoo,
    EpochMs,
    EpochS,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Many2onePart {
    Id,
    Name,
}

#[derive(Debug, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    pub path: Option<Vec<String>>,
    pub template: Option<String>,
    #[serde(rename = "const")]
    pub const_: Option<Value>,
    #[serde(default)]
    pub has_const: bool,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub format: TimestampFormat,
    pub many2one: Many2onePart,
    pub map: Option<HashMap<String, Value>>,
    pub map_default: Option<Value>,
    #[serde(default)]
    pub has_map_default: bool,
    pub convert: Option<ConvertSpec>,
    pub unit_name: Option<String>,
    pub default: Option<Value>,
    #[serde(default)]
    pub has_default: bool,
}

#[derive(Debug, Deserialize)]
pub struct ConvertSpec {
    pub table: String,
    pub from_path: Option<Vec<String>>,
    pub from_unit: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    // Declared least critical first so `max()` picks the most critical lane.
    Bulk,
    Standard,
    Critical,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Critical => "critical",
            Lane::Standard => "standard",
            Lane::Bulk => "bulk",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    BestEffort,
    AtLeastOnce,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::BestEffort => "best_effort",
            DeliveryMode::AtLeastOnce => "at_least_once",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RouteSpec {
    pub name: String,
    pub subjects: Vec<String>,
    pub types: Vec<String>,
    pub when: Option<String>,
    pub lane: Lane,
    pub delivery: DeliveryMode,
    pub to: String,
    pub dedup: Option<DedupSpec>,
    pub stale: Option<StaleSpec>,
}

#[derive(Debug, Deserialize)]
pub struct DedupSpec {
    pub key: String,
    pub window: u64,
    pub capacity: usize,
}

#[derive(Debug, Deserialize)]
pub struct StaleSpec {
    pub key: String,
    pub version: String,
    pub capacity: usize,
}
