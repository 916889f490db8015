//! The whole in-process pipeline: decode -> validate -> map -> validate canonical -> route
//! (predicates, dedup, stale guard, destination subjects), one `Outcome` per event.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use chrono::DateTime;
use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::decode::{decode, Limits};
use crate::dedup::{DedupCache, KeyHash, ReadAt};
use crate::error::{PlanError, Reason, Rejection};
use crate::json::{lookup, Found, Json, Scalar};
use crate::map::Mapper;
use crate::plan::{DeadLetterSpec, DeliveryMode, Lane, PlanSpec};
use crate::route::{any_match, check_subject_token, Predicate, SubjectPattern};
use crate::stale::StaleGuard;
use crate::template::{RenderError, Template};
use crate::validate::SchemaCheck;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Routed,
    Duplicate,
    Stale,
    DeadLetter,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Routed => "routed",
            Status::Duplicate => "duplicate",
            Status::Stale => "stale",
            Status::DeadLetter => "dead_letter",
        }
    }
}

/// CloudEvents 1.0 attributes of a canonical event (`specversion` is always "1.0" and
/// `datacontenttype` "application/json").
#[derive(Clone, Debug)]
pub struct CeAttributes {
    pub source: Arc<str>,
    pub ce_type: Arc<str>,
    pub dataschema: Arc<str>,
    /// id, time, subject and partitionkey one after another: one allocation per event rather
    /// than four (allocation was a tenth of the pipeline's samples in the data plane).
    text: String,
    /// Where each of the four ends in `text`; `None` when the event has no such attribute.
    ends: [Option<u32>; 4],
}

const CE_ID: usize = 0;
const CE_TIME: usize = 1;
const CE_SUBJECT: usize = 2;
const CE_PARTITIONKEY: usize = 3;

impl CeAttributes {
    pub fn id(&self) -> &str {
        self.part(CE_ID).unwrap_or_default()
    }
    pub fn time(&self) -> Option<&str> {
        self.part(CE_TIME)
    }
    pub fn subject(&self) -> Option<&str> {
        self.part(CE_SUBJECT)
    }
    pub fn partitionkey(&self) -> Option<&str> {
        self.part(CE_PARTITIONKEY)
    }

    fn part(&self, i: usize) -> Option<&str> {
        let end = self.ends[i]? as usize;
        let start = self.ends[..i].iter().rev().find_map(|e| *e).unwrap_or(0) as usize;
        self.text.get(start..end)
    }

    /// Appends the next attribute's text (`i` in order) with `write`, or records it absent
    /// when `write` fails.
    fn push<E>(
        &mut self,
        i: usize,
        write: impl FnOnce(&mut String) -> Result<(), E>,
    ) -> Result<(), E> {
        let mark = self.text.len();
        match write(&mut self.text) {
            Ok(()) => {
                self.ends[i] = u32::try_from(self.text.len()).ok();
                Ok(())
            }
            Err(e) => {
                self.text.truncate(mark);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
impl CeAttributes {
    /// Attributes with only an id, for tests of what egress writes.
    pub(crate) fn with_id(id: &str) -> CeAttributes {
        CeAttributes {
            source: Arc::from("urn:test"),
            ce_type: Arc::from("test"),
            dataschema: Arc::from("urn:test:schema"),
            text: id.to_owned(),
            ends: [u32::try_from(id.len()).ok(), None, None, None],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub route: Arc<str>,
    /// The route's position in the plan, for `confirm`/`release`.
    pub route_ix: usize,
    pub subject: String,
    pub lane: Lane,
    pub mode: DeliveryMode,
    pub dedup_id: Option<u128>,
}

#[derive(Clone, Debug)]
pub struct Skip {
    pub route: Arc<str>,
    pub status: Status,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    pub source: Option<Arc<str>>,
    pub canonical_type: Option<Arc<str>>,
    pub attributes: Option<CeAttributes>,
    /// The canonical entity as JSON (empty for dead letters).
    pub data: Vec<u8>,
    pub deliveries: Vec<Delivery>,
    pub skipped: Vec<Skip>,
    pub rejection: Option<Rejection>,
    /// The route a rejection belongs to, when one does.
    pub route: Option<Arc<str>>,
}

impl Outcome {
    fn dead(source: Option<Arc<str>>, route: Option<Arc<str>>, r: Rejection) -> Outcome {
        Outcome {
            status: Status::DeadLetter,
            source,
            canonical_type: None,
            attributes: None,
            data: Vec::new(),
            deliveries: Vec::new(),
            skipped: Vec::new(),
            rejection: Some(r),
            route,
        }
    }

    /// The most critical lane among the deliveries.
    pub fn lane(&self) -> Option<Lane> {
        self.deliveries.iter().map(|d| d.lane).max()
    }
}

struct Source {
    name: Arc<str>,
    patterns: Vec<SubjectPattern>,
    mapping: usize,
    // Compiled for this source's profile (Odoo quirks or plain JSON).
    mapper: Mapper,
    schema: Option<SchemaCheck>,
    uri: Arc<str>,
    bound: Bound,
}

/// Where a template placeholder's value is in a source's canonical entity, settled when the
/// plan is compiled. An entity holds its mapping's fields in one fixed order
/// (`Mapper::apply`), so a placeholder naming one of them needs no search per event: a
/// telemetry event renders about fifteen, and searching the entity's keys for each cost
/// more than any other part of rendering (scripts/event-cost).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    /// The entity's field at this position.
    Field(usize),
    /// Anything else (`ce.*`, a nested path, a name the mapping lacks): searched as before.
    Search,
}

/// The slots of every template that reads one source's entities.
#[derive(Default)]
struct Bound {
    id: Box<[Slot]>,
    subject: Box<[Slot]>,
    partitionkey: Box<[Slot]>,
    /// The mapping's `time` field.
    time: Option<usize>,
    /// Per route, by its position in the plan.
    routes: Vec<RouteSlots>,
}

#[derive(Default)]
struct RouteSlots {
    to: Box<[Slot]>,
    dedup: Box<[Slot]>,
    stale: Box<[Slot]>,
    /// The stale guard's `version` field.
    version: Option<usize>,
}

fn slots(t: Option<&Template>, mapper: &Mapper) -> Box<[Slot]> {
    t.map(|t| {
        t.vars()
            .map(|p| match p {
                [name] => mapper.field_index(name).map_or(Slot::Search, Slot::Field),
                _ => Slot::Search,
            })
            .collect()
    })
    .unwrap_or_default()
}

impl Bound {
    fn new(mapper: &Mapper, m: &MappingRt, routes: &[Route]) -> Bound {
        Bound {
            id: slots(m.id.as_ref(), mapper),
            subject: slots(m.subject.as_ref(), mapper),
            partitionkey: slots(m.partitionkey.as_ref(), mapper),
            time: m.time.as_deref().and_then(|f| mapper.field_index(f)),
            routes: routes
                .iter()
                .map(|r| RouteSlots {
                    to: slots(Some(&r.to), mapper),
                    dedup: slots(r.dedup.as_ref().map(|d| &d.key), mapper),
                    stale: slots(r.stale.as_ref().map(|s| &s.key), mapper),
                    version: r
                        .stale
                        .as_ref()
                        .and_then(|s| mapper.field_index(&s.version)),
                })
                .collect(),
        }
    }
}

struct MappingRt {
    canonical: Arc<str>,
    ce_type: Arc<str>,
    dataschema: Arc<str>,
    schema: SchemaCheck,
    id: Option<Template>,
    subject: Option<Template>,
    time: Option<String>,
    partitionkey: Option<Template>,
    /// Length of the longest recent canonical JSON written for this mapping: the next
    /// entity's buffer starts that large, so serialising does not grow it step by step (a
    /// telemetry sample's canonical form is longer than its input, an Odoo body's shorter).
    data_len: AtomicUsize,
}

struct Dedup {
    key: Template,
    cache: DedupCache,
}

struct Stale {
    key: Template,
    version: String,
    guard: StaleGuard,
}

struct Route {
    name: Arc<str>,
    patterns: Vec<SubjectPattern>,
    types: Vec<String>,
    predicate: Option<Predicate>,
    lane: Lane,
    mode: DeliveryMode,
    to: Template,
    dedup: Option<Dedup>,
    stale: Option<Stale>,
    /// Identifies what the route's dedup and stale state mean (keys, window), so a snapshot
    /// taken under a different definition is not restored into it.
    fingerprint: u64,
}

impl Route {
    /// Committed dedup keys and stale versions, for a snapshot.
    fn state(&self) -> RouteState {
        RouteState {
            route: self.name.to_string(),
            fingerprint: self.fingerprint,
            dedup: self
                .dedup
                .as_ref()
                .map(|d| d.cache.export())
                .unwrap_or_default(),
            stale: self
                .stale
                .as_ref()
                .map(|s| s.guard.export())
                .unwrap_or_default(),
        }
    }
}

/// A route's whole state being read in parts (`Pipeline::start_export`).
pub struct RouteExport {
    route: usize,
    /// Where the read of the dedup table has got, then (once `dedup_done`) the stale table.
    at: ReadAt,
    dedup_done: bool,
    state: RouteState,
}

impl RouteExport {
    pub fn into_state(self) -> RouteState {
        self.state
    }
}

/// One route's dedup and stale state, for a snapshot that survives a restart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteState {
    pub route: String,
    pub fingerprint: u64,
    pub dedup: Vec<(KeyHash, u64)>,
    pub stale: Vec<(KeyHash, i64, u64)>,
}

/// What ingest needs to know about a subject before the pipeline sees the event: its lane
/// (the most critical of the routes that can take it) and whether every such route is
/// best effort (only then may an overloaded lane shed it). Cheap to clone into each task.
#[derive(Clone)]
pub struct Classifier {
    sources: Arc<Vec<(Vec<SubjectPattern>, Arc<str>)>>,
    routes: Arc<Vec<RouteClass>>,
}

/// A route as ingest sees it: subject patterns, canonical types, lane, delivery.
type RouteClass = (Vec<SubjectPattern>, Vec<String>, Lane, DeliveryMode);

impl Classifier {
    pub fn classify(&self, subject: &str) -> (Lane, bool) {
        let Some((_, ce_type)) = self.sources.iter().find(|(p, _)| any_match(p, subject)) else {
            return (Lane::Standard, true);
        };
        let mut lane = None;
        let mut shed_ok = true;
        for (patterns, types, l, mode) in self.routes.iter() {
            if any_match(patterns, subject)
                && (types.is_empty() || types.iter().any(|t| **t == **ce_type))
            {
                lane = lane.max(Some(*l));
                shed_ok &= *mode == DeliveryMode::BestEffort;
            }
        }
        (lane.unwrap_or(Lane::Standard), shed_ok)
    }
}

/// Counters since the pipeline was built (a snapshot; see `Pipeline::stats`).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events_in: u64,
    pub by_status: HashMap<Status, u64>,
    pub by_reason: HashMap<Reason, u64>,
    pub by_route: HashMap<Arc<str>, u64>,
}

// Bumped per event, so plain arrays indexed by enum discriminant and route position: no
// hashing and no reference counting on the hot path.
#[derive(Default)]
struct Counters {
    events_in: u64,
    status: [u64; 4],
    reason: [u64; Reason::ALL.len()],
    route: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct RouteMemory {
    pub route: Arc<str>,
    pub dedup_keys: usize,
    pub dedup_bytes: usize,
    pub stale_keys: usize,
    pub stale_bytes: usize,
}

/// An event after the stateless stages: the outcome so far and, per matching route, what
/// commit needs. A dead letter is finished (its status says so) and has no candidates.
/// A pair rather than a struct so a batch unzips into its outcomes, which commit then
/// finishes in place: every move of an outcome copies a few hundred bytes, and the moves
/// in and out of commit were a few % of the router in profiles (memmove).
type Prepared = (Outcome, Vec<Candidate>);

fn done(o: Outcome) -> Prepared {
    (o, Vec::new())
}

struct Candidate {
    route: usize,
    subject: String,
    dedup: Option<KeyHash>,
    stale: Option<(KeyHash, i64)>,
}

// Below this many events a batch runs inline: handing work to threads costs more than it saves.
const PARALLEL_MIN_BATCH: usize = 64;
const PARALLEL_MIN_CHUNK: usize = 32;

struct SubjectPlan {
    source: Option<usize>,
    routes: Box<[usize]>,
}

// Bounds the subject cache; a plant with more distinct subjects than this just re-matches.
const SUBJECT_CACHE_MAX: usize = 65_536;

/// How many events ahead of the one it commits `process_batch` (and `settle`) loads the
/// table slots of: far enough for a memory load to land (a commit takes a few hundred ns),
/// near enough that the lines are still in the L1 cache when used.
const COMMIT_PREFETCH: usize = 8;

/// A compiled plan with its dedup and stale state.
pub struct Pipeline {
    pub name: String,
    pub version: String,
    pub dead_letter: DeadLetterSpec,
    limits: Limits,
    sources: Vec<Source>,
    mappings: Vec<MappingRt>,
    routes: Vec<Route>,
    cel: cel::Context<'static, 'static>,
    counters: Counters,
    subject_cache: hashbrown::HashMap<Box<str>, Arc<SubjectPlan>>,
    pool: Option<rayon::ThreadPool>,
    threads: usize,
}

fn tmpl(src: &Option<String>) -> Result<Option<Template>, PlanError> {
    src.as_deref().map(Template::compile).transpose()
}

impl Pipeline {
    pub fn from_json(plan: &str) -> Result<Pipeline, PlanError> {
        let spec: PlanSpec = serde_json::from_str(plan)?;
        Pipeline::new(spec)
    }

    pub fn new(spec: PlanSpec) -> Result<Pipeline, PlanError> {
        let mut mapping_ix = HashMap::new();
        let mut mappings = Vec::new();
        let mut names: Vec<&String> = spec.mappings.keys().collect();
        names.sort();
        for name in names {
            let m = &spec.mappings[name];
            let schema =
                SchemaCheck::compile(&m.schema).map_err(|detail| PlanError::CanonicalSchema {
                    mapping: name.clone(),
                    detail,
                })?;
            mapping_ix.insert(name.clone(), mappings.len());
            mappings.push(MappingRt {
                canonical: m.canonical.as_str().into(),
                ce_type: m.ce_type.as_str().into(),
                dataschema: m.dataschema.as_str().into(),
                schema,
                id: tmpl(&m.id)?,
                subject: tmpl(&m.subject)?,
                time: m.time.clone(),
                partitionkey: tmpl(&m.partitionkey)?,
                data_len: AtomicUsize::new(0),
            });
        }
        let mut sources = Vec::new();
        for s in &spec.sources {
            let mapping = *mapping_ix
                .get(&s.mapping)
                .ok_or_else(|| PlanError::Invalid {
                    at: format!("source {}", s.name),
                    detail: format!("no mapping {:?}", s.mapping),
                })?;
            let schema = match &s.schema {
                None => None,
                Some(v) => {
                    Some(
                        SchemaCheck::compile(v).map_err(|detail| PlanError::SourceSchema {
                            source_name: s.name.clone(),
                            detail,
                        })?,
                    )
                }
            };
            sources.push(Source {
                name: s.name.as_str().into(),
                patterns: s
                    .subjects
                    .iter()
                    .map(|p| SubjectPattern::parse(p))
                    .collect(),
                mapping,
                mapper: Mapper::compile(
                    &s.mapping,
                    &spec.mappings[&s.mapping].fields,
                    s.profile,
                    &spec.units,
                )?,
                schema,
                uri: s.source_uri.as_str().into(),
                bound: Bound::default(),
            });
        }
        let mut routes = Vec::new();
        for r in &spec.routes {
            let predicate = match &r.when {
                None => None,
                Some(w) => Some(
                    Predicate::compile(w).map_err(|detail| PlanError::Predicate {
                        route: r.name.clone(),
                        detail,
                    })?,
                ),
            };
            let fingerprint = {
                let mut h = Xxh3::new();
                for part in [
                    r.dedup.as_ref().map(|d| d.key.as_str()).unwrap_or(""),
                    &r.dedup
                        .as_ref()
                        .map(|d| d.window.to_string())
                        .unwrap_or_default(),
                    r.stale.as_ref().map(|s| s.key.as_str()).unwrap_or(""),
                    r.stale.as_ref().map(|s| s.version.as_str()).unwrap_or(""),
                ] {
                    h.update(part.as_bytes());
                    h.update(&[0]);
                }
                h.digest()
            };
            routes.push(Route {
                fingerprint,
                name: r.name.as_str().into(),
                patterns: r
                    .subjects
                    .iter()
                    .map(|p| SubjectPattern::parse(p))
                    .collect(),
                types: r.types.clone(),
                predicate,
                lane: r.lane,
                mode: r.delivery,
                to: Template::compile(&r.to)?,
                dedup: match &r.dedup {
                    None => None,
                    Some(d) => Some(Dedup {
                        key: Template::compile(&d.key)?,
                        cache: DedupCache::new(d.window, d.capacity),
                    }),
                },
                stale: match &r.stale {
                    None => None,
                    Some(s) => Some(Stale {
                        key: Template::compile(&s.key)?,
                        version: s.version.clone(),
                        guard: StaleGuard::new(s.capacity),
                    }),
                },
            });
        }
        for s in &mut sources {
            s.bound = Bound::new(&s.mapper, &mappings[s.mapping], &routes);
        }
        Ok(Pipeline {
            name: spec.name,
            version: spec.version,
            dead_letter: spec.dead_letter,
            limits: spec.limits,
            sources,
            mappings,
            cel: cel::Context::default(),
            counters: Counters {
                route: vec![0; routes.len()],
                ..Counters::default()
            },
            routes,
            subject_cache: hashbrown::HashMap::new(),
            pool: None,
            threads: 1,
        })
    }

    /// Run a batch. `now_ms` (Unix milliseconds) drives dedup windows, so tests inject time.
    ///
    /// Stateless stages run on the pipeline's worker threads when it has more than one
    /// (`with_threads`); dedup and stale decisions then run in input order, so results do
    /// not depend on the thread count.
    pub fn process_batch<'a, I>(&mut self, events: I, now_ms: u64) -> Vec<Outcome>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let events: Vec<(&str, &[u8], Arc<SubjectPlan>)> = events
            .into_iter()
            .map(|(s, b)| {
                let plan = self.resolve(s);
                (s, b, plan)
            })
            .collect();
        let (mut outcomes, mut candidates): (Vec<Outcome>, Vec<Vec<Candidate>>) = match &self.pool {
            Some(pool) if events.len() >= PARALLEL_MIN_BATCH => {
                let this = &*self;
                pool.install(|| {
                    events
                        .par_iter()
                        .with_min_len(PARALLEL_MIN_CHUNK)
                        .map(|(s, b, plan)| this.prepare_guarded(plan, s, b))
                        .unzip()
                })
            }
            _ => events
                .iter()
                .map(|(s, b, plan)| self.prepare_guarded(plan, s, b))
                .unzip(),
        };
        // Each commit's dedup and stale lookups start with a cache miss in a large table (a
        // full two-million-key dedup table is 57 MB): paid one after another, they were the
        // largest stage of a saturated router. Loading the keys of the events a few places
        // ahead lets those misses overlap.
        for c in candidates.iter().take(COMMIT_PREFETCH) {
            self.prefetch(c);
        }
        for (i, out) in outcomes.iter_mut().enumerate() {
            if let Some(ahead) = candidates.get(i + COMMIT_PREFETCH) {
                self.prefetch(ahead);
            }
            let c = std::mem::take(&mut candidates[i]);
            self.commit_guarded(out, c, now_ms);
        }
        outcomes
    }

    /// Starts loading the table slots `commit` will look up for these candidates.
    fn prefetch(&self, candidates: &[Candidate]) {
        for c in candidates {
            let r = &self.routes[c.route];
            if let (Some(d), Some(key)) = (&r.dedup, c.dedup) {
                d.cache.prefetch(key);
            }
            if let (Some(s), Some((key, _))) = (&r.stale, c.stale) {
                s.guard.prefetch(key);
            }
        }
    }

    /// Run one event. Never panics: a bug becomes a dead letter `internal_error`.
    pub fn process(&mut self, subject: &str, payload: &[u8], now_ms: u64) -> Outcome {
        let plan = self.resolve(subject);
        let (mut out, candidates) = self.prepare_guarded(&plan, subject, payload);
        self.commit_guarded(&mut out, candidates, now_ms);
        out
    }

    /// Use `threads` worker threads for the stateless stages of a batch (1: run inline).
    pub fn with_threads(mut self, threads: usize) -> Result<Pipeline, PlanError> {
        self.pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("millstream-core-{i}"))
                    .build()
                    .map_err(|e| PlanError::Invalid {
                        at: "threads".into(),
                        detail: e.to_string(),
                    })?,
            )
        } else {
            None
        };
        self.threads = threads.max(1);
        Ok(self)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    #[inline(never)] // a frame of its own for `scripts/profile-e2e` (see `decode::decode`)
    fn prepare_guarded(&self, plan: &SubjectPlan, subject: &str, payload: &[u8]) -> Prepared {
        catch_unwind(AssertUnwindSafe(|| self.prepare(plan, subject, payload)))
            .unwrap_or_else(|panic| done(internal_error(panic)))
    }

    #[inline(never)] // a frame of its own for `scripts/profile-e2e` (see `decode::decode`)
    fn commit_guarded(&mut self, out: &mut Outcome, candidates: Vec<Candidate>, now_ms: u64) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.commit(out, candidates, now_ms)))
        {
            *out = internal_error(panic);
        }
        self.count(out);
    }

    fn count(&mut self, out: &Outcome) {
        let c = &mut self.counters;
        c.events_in += 1;
        c.status[out.status as usize] += 1;
        if let Some(r) = &out.rejection {
            c.reason[r.reason as usize] += 1;
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let statuses = [
            Status::Routed,
            Status::Duplicate,
            Status::Stale,
            Status::DeadLetter,
        ];
        Stats {
            events_in: c.events_in,
            by_status: statuses
                .iter()
                .map(|&s| (s, c.status[s as usize]))
                .collect(),
            by_reason: Reason::ALL
                .iter()
                .filter(|&&r| c.reason[r as usize] > 0)
                .map(|&r| (r, c.reason[r as usize]))
                .collect(),
            by_route: self
                .routes
                .iter()
                .zip(&c.route)
                .filter(|(_, &n)| n > 0)
                .map(|(r, &n)| (r.name.clone(), n))
                .collect(),
        }
    }

    pub fn memory(&self) -> Vec<RouteMemory> {
        self.routes
            .iter()
            .map(|r| RouteMemory {
                route: r.name.clone(),
                dedup_keys: r.dedup.as_ref().map_or(0, |d| d.cache.len()),
                dedup_bytes: r.dedup.as_ref().map_or(0, |d| d.cache.memory_bytes()),
                stale_keys: r.stale.as_ref().map_or(0, |s| s.guard.len()),
                stale_bytes: r.stale.as_ref().map_or(0, |s| s.guard.memory_bytes()),
            })
            .collect()
    }

    /// At-least-once outputs settled, as `(route, dedup id, acknowledged)`: `confirm` each
    /// acknowledged one, `release` the others. The keys were looked up when their events
    /// were committed, long enough ago to have left the cache, so each one's slot is loaded
    /// a few places ahead, as in `process_batch`.
    pub fn settle(&mut self, settled: &[(usize, u128, bool)]) {
        let prefetch = |p: &Pipeline, (route_ix, id, _): (usize, u128, bool)| {
            if let Some(d) = p.routes.get(route_ix).and_then(|r| r.dedup.as_ref()) {
                d.cache.prefetch(KeyHash(id.to_le_bytes()));
            }
        };
        for &s in settled.iter().take(COMMIT_PREFETCH) {
            prefetch(self, s);
        }
        for (i, &(route_ix, id, ok)) in settled.iter().enumerate() {
            if let Some(&ahead) = settled.get(i + COMMIT_PREFETCH) {
                prefetch(self, ahead);
            }
            if ok {
                self.confirm(route_ix, id);
            } else {
                self.release(route_ix, id);
            }
        }
    }

    /// An at-least-once output was acknowledged: commit its dedup key.
    pub fn confirm(&mut self, route_ix: usize, dedup_id: u128) {
        if let Some(d) = self.routes.get_mut(route_ix).and_then(|r| r.dedup.as_mut()) {
            d.cache.confirm(KeyHash(dedup_id.to_le_bytes()));
        }
    }

    /// An at-least-once output failed: release its dedup key so the redelivery is not
    /// mistaken for a duplicate.
    pub fn release(&mut self, route_ix: usize, dedup_id: u128) {
        if let Some(d) = self.routes.get_mut(route_ix).and_then(|r| r.dedup.as_mut()) {
            d.cache.forget(KeyHash(dedup_id.to_le_bytes()));
        }
    }

    /// Committed dedup keys and stale versions of every route that keeps state.
    pub fn export_state(&self) -> Vec<RouteState> {
        self.routes
            .iter()
            .filter(|r| r.dedup.is_some() || r.stale.is_some())
            .map(Route::state)
            .collect()
    }

    /// Start reading one route's whole state in parts (`export_part`), if it has a route
    /// of that name: its dedup keys, then its stale versions.
    pub fn start_export(&self, route: &str) -> Option<RouteExport> {
        let (ix, r) = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| *r.name == *route)?;
        Some(RouteExport {
            route: ix,
            at: ReadAt::default(),
            dedup_done: false,
            state: RouteState {
                route: r.name.to_string(),
                fingerprint: r.fingerprint,
                dedup: Vec::with_capacity(r.dedup.as_ref().map_or(0, |d| d.cache.len())),
                stale: Vec::with_capacity(r.stale.as_ref().map_or(0, |s| s.guard.len())),
            },
        })
    }

    /// Read the next `slots` dedup or stale table slots of an export; true once it is
    /// complete. The caller lets go of the pipeline between parts, so events keep flowing
    /// while a table of millions of keys is read (whole, that held them back for tens of
    /// ms). Keys committed meanwhile are in the next `changed_state`;
    /// `DedupCache::export_part` says what a read in parts guarantees. `export` must come
    /// from this pipeline (a reload replaces it: start again).
    pub fn export_part(&mut self, export: &mut RouteExport, slots: usize) -> bool {
        let Some(r) = self.routes.get_mut(export.route) else {
            return true;
        };
        if !export.dedup_done {
            export.dedup_done = r.dedup.as_mut().is_none_or(|d| {
                d.cache
                    .export_part(&mut export.at, slots, &mut export.state.dedup)
            });
            if !export.dedup_done {
                return false;
            }
            export.at = ReadAt::default();
        }
        r.stale.as_mut().is_none_or(|s| {
            s.guard
                .export_part(&mut export.at, slots, &mut export.state.stale)
        })
    }

    /// Start recording what changes, so `changed_state` can return only that.
    pub fn track_changes(&mut self) {
        for r in &mut self.routes {
            if let Some(d) = &mut r.dedup {
                d.cache.track_changes();
            }
            if let Some(s) = &mut r.stale {
                s.guard.track_changes();
            }
        }
    }

    /// For every route with state: what changed since the last call (`false`), or `true`
    /// with nothing in it when a delta will not do (the first call, or more changes than
    /// the route's capacity) and the caller must save the route whole (`start_export`).
    /// Only swaps each route's record of changes out, so it holds the pipeline briefly.
    pub fn changed_state(&mut self) -> Vec<(RouteState, bool)> {
        let mut out = Vec::new();
        for r in &mut self.routes {
            if r.dedup.is_none() && r.stale.is_none() {
                continue;
            }
            let dedup = r.dedup.as_mut().map(|d| d.cache.take_changes());
            let stale = r.stale.as_mut().map(|s| s.guard.take_changes());
            let full = matches!(dedup, Some(None)) || matches!(stale, Some(None));
            let state = RouteState {
                route: r.name.to_string(),
                fingerprint: r.fingerprint,
                dedup: dedup.flatten().filter(|_| !full).unwrap_or_default(),
                stale: stale.flatten().filter(|_| !full).unwrap_or_default(),
            };
            out.push((state, full));
        }
        out
    }

    /// Restore one route's state; `None` when no route of that name has the same
    /// definition (a renamed route, or changed keys or window, starts empty).
    pub fn import_state(&mut self, state: &RouteState, now_ms: u64) -> Option<(usize, usize)> {
        let r = self
            .routes
            .iter_mut()
            .find(|r| *r.name == *state.route && r.fingerprint == state.fingerprint)?;
        let d = r
            .dedup
            .as_mut()
            .map_or(0, |d| d.cache.import(&state.dedup, now_ms));
        let s = r.stale.as_mut().map_or(0, |s| s.guard.import(&state.stale));
        Some((d, s))
    }

    /// Take over from the pipeline this one replaces (a config reload): dedup and stale state
    /// of every route kept with the same definition, and the counters, so statistics do not
    /// go back to zero. Returns the routes whose state carried over.
    pub fn adopt(&mut self, old: &Pipeline, now_ms: u64) -> Vec<String> {
        let mut kept = Vec::new();
        for state in old.export_state() {
            if self.import_state(&state, now_ms).is_some() {
                kept.push(state.route);
            }
        }
        let (c, o) = (&mut self.counters, &old.counters);
        c.events_in = o.events_in;
        c.status = o.status;
        c.reason = o.reason;
        for (i, r) in self.routes.iter().enumerate() {
            if let Some(j) = old.routes.iter().position(|x| x.name == r.name) {
                c.route[i] = o.route.get(j).copied().unwrap_or(0);
            }
        }
        kept
    }

    pub fn classifier(&self) -> Classifier {
        Classifier {
            sources: Arc::new(
                self.sources
                    .iter()
                    .map(|s| (s.patterns.clone(), self.mappings[s.mapping].ce_type.clone()))
                    .collect(),
            ),
            routes: Arc::new(
                self.routes
                    .iter()
                    .map(|r| (r.patterns.clone(), r.types.clone(), r.lane, r.mode))
                    .collect(),
            ),
        }
    }

    pub fn route_names(&self) -> Vec<Arc<str>> {
        self.routes.iter().map(|r| r.name.clone()).collect()
    }

    /// Which source reads `subject` and which routes' subject patterns match it. Subjects
    /// repeat (one per machine, one per Odoo model), so the answer is cached.
    fn resolve(&mut self, subject: &str) -> Arc<SubjectPlan> {
        if let Some(plan) = self.subject_cache.get(subject) {
            return plan.clone();
        }
        let plan = Arc::new(SubjectPlan {
            source: self
                .sources
                .iter()
                .position(|s| any_match(&s.patterns, subject)),
            routes: (0..self.routes.len())
                .filter(|&i| any_match(&self.routes[i].patterns, subject))
                .collect(),
        });
        if self.subject_cache.len() >= SUBJECT_CACHE_MAX {
            self.subject_cache.clear();
        }
        self.subject_cache.insert(subject.into(), plan.clone());
        plan
    }

    /// Everything that only reads the plan: decode, validate, map, canonical validation,
    /// CloudEvents attributes, destination and key rendering, serialisation. Safe to run for
    /// many events at once; state-dependent decisions wait for `commit`.
    fn prepare(&self, resolved: &SubjectPlan, subject: &str, payload: &[u8]) -> Prepared {
        let Some(src) = resolved.source.map(|i| &self.sources[i]) else {
            return done(Outcome::dead(
                None,
                None,
                Rejection::new(
                    Reason::UnknownSource,
                    format!("no source reads {subject:?}"),
                ),
            ));
        };
        let source = Some(src.name.clone());
        let fail = |r: Rejection| done(Outcome::dead(source.clone(), None, r));
        let doc = match decode(payload, &self.limits) {
            Ok(d) => d,
            Err(r) => return fail(r),
        };
        let doc = Json::Obj(doc);
        if let Some(schema) = &src.schema {
            if let Err(detail) = schema.check(&doc) {
                return fail(Rejection::new(Reason::SchemaViolation, detail));
            }
        }
        let Json::Obj(doc) = doc else {
            return fail(Rejection::new(Reason::InternalError, "decoded object lost"));
        };
        let m = &self.mappings[src.mapping];
        let entity = match src.mapper.apply(&doc) {
            Ok(e) => e,
            Err(r) => return fail(r),
        };
        let entity = Json::Obj(entity);
        if let Err(detail) = m.schema.check(&entity) {
            return fail(Rejection::new(
                Reason::CanonicalInvalid,
                format!("{}: {detail}", m.canonical),
            ));
        }
        let Json::Obj(entity) = entity else {
            return fail(Rejection::new(Reason::InternalError, "entity lost"));
        };

        // CloudEvents attributes: templates read the canonical entity.
        let b = &src.bound;
        let field = |p: &[String]| lookup(&entity, p).map_or(Found::Missing, Json::scalar);
        let at = |slots: &[Slot], i: usize, p: &[String]| match slots.get(i) {
            Some(Slot::Field(ix)) => entity.get(*ix).map_or(Found::Missing, |(_, v)| v.scalar()),
            _ => field(p),
        };
        let mut attrs = CeAttributes {
            source: src.uri.clone(),
            ce_type: m.ce_type.clone(),
            dataschema: m.dataschema.clone(),
            text: String::with_capacity(160),
            ends: [None; 4],
        };
        let id = attrs.push(CE_ID, |out| match &m.id {
            Some(t) => t.render_append(out, |i, p| at(&b.id, i, p), |_, _| Ok(())),
            None => {
                let mut h = Xxh3::new();
                h.update(src.name.as_bytes());
                h.update(&[0]);
                h.update(payload);
                use std::fmt::Write as _;
                let _ = write!(out, "{:032x}", h.digest128());
                Ok(())
            }
        });
        if let Err(e) = id {
            return fail(key_missing("id", e));
        }
        let time = b.time.and_then(|ix| match entity.get(ix) {
            Some((_, Json::Str(s))) => Some(s),
            _ => None,
        });
        if let Some(t) = time {
            let _ = attrs.push(CE_TIME, |out| {
                out.push_str(t);
                Ok::<(), ()>(())
            });
        }
        if let Some(t) = &m.subject {
            let _ = attrs.push(CE_SUBJECT, |out| {
                t.render_append(out, |i, p| at(&b.subject, i, p), |_, _| Ok(()))
            });
        }
        if let Some(t) = &m.partitionkey {
            let _ = attrs.push(CE_PARTITIONKEY, |out| {
                t.render_append(out, |i, p| at(&b.partitionkey, i, p), |_, _| Ok(()))
            });
        }
        // `ce.*` values for templates, built only if a template asks for one.
        let ce_value = |attr: &str| -> Found<'_> {
            let s = match attr {
                "id" => Some(attrs.id()),
                "type" => Some(&*attrs.ce_type),
                "source" => Some(&*attrs.source),
                "subject" => attrs.subject(),
                _ => None,
            };
            s.map_or(Found::Missing, |s| Found::Scalar(Scalar::Str(s)))
        };
        // `ce.*` has two segments, so it is never bound to a field (`slots`)
        let lookup = |slots: &[Slot], i: usize, p: &[String]| -> Found<'_> {
            match p {
                [ce, attr] if ce == "ce" => ce_value(attr),
                _ => at(slots, i, p),
            }
        };

        // Decide every route before touching dedup/stale state, so an event that ends as a
        // dead letter leaves no trace that would make its fixed replay look like a duplicate.
        let mut plans: Vec<Candidate> = Vec::with_capacity(resolved.routes.len());
        let mut matched = false;
        // Dedup and stale keys are rendered here one after another; sized once so rendering
        // does not regrow it (that showed as a few % of the router in profiles).
        let mut key_text = String::with_capacity(128);
        for &ri in resolved.routes.iter() {
            let r = &self.routes[ri];
            let rb = &b.routes[ri];
            if !(r.types.is_empty() || r.types.iter().any(|t| **t == *m.ce_type)) {
                continue;
            }
            let rfail = |reason, detail: String| {
                done(Outcome::dead(
                    source.clone(),
                    Some(r.name.clone()),
                    Rejection::new(reason, detail),
                ))
            };
            if let Some(p) = &r.predicate {
                match p.eval(&self.cel, &entity, subject) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return rfail(Reason::PredicateError, e),
                }
            }
            matched = true;
            let to = match r
                .to
                .render(|i, p| lookup(&rb.to, i, p), check_subject_token)
            {
                Ok(s) => s,
                Err(RenderError::Missing(f)) => {
                    return rfail(Reason::SubjectRejected, format!("{f} is empty"))
                }
                Err(RenderError::NotScalar(why)) => return rfail(Reason::SubjectRejected, why),
            };
            let mut stale = None;
            if let Some(s) = &r.stale {
                let stale_key = |i, p: &[String]| lookup(&rb.stale, i, p);
                let key = match s.key.render_into(&mut key_text, stale_key, |_, _| Ok(())) {
                    Ok(()) => KeyHash::of(&key_text),
                    Err(e) => return rfail(Reason::KeyMissing, render_err("stale.key", e)),
                };
                let version = rb.version.and_then(|ix| entity.get(ix));
                let version = match version.map(|(_, v)| version_of(v)) {
                    Some(Ok(v)) => v,
                    Some(Err(why)) => return rfail(Reason::KeyMissing, why),
                    None => {
                        return rfail(
                            Reason::KeyMissing,
                            format!("stale.version: {} is empty", s.version),
                        )
                    }
                };
                stale = Some((key, version));
            }
            let mut dedup = None;
            if let Some(d) = &r.dedup {
                let dedup_key = |i, p: &[String]| lookup(&rb.dedup, i, p);
                let key = match d.key.render_into(&mut key_text, dedup_key, |_, _| Ok(())) {
                    Ok(()) => KeyHash::of(&key_text),
                    Err(e) => return rfail(Reason::KeyMissing, render_err("dedup.key", e)),
                };
                dedup = Some(key);
            }
            plans.push(Candidate {
                route: ri,
                subject: to,
                dedup,
                stale,
            });
        }
        if !matched {
            return fail(Rejection::new(
                Reason::NoRoute,
                format!("no route takes {} from {subject:?}", m.canonical),
            ));
        }
        // One allocation, not a doubling series: as long as this mapping's last entity, plus
        // the room the writer asks for before it writes a string (see `Mapper::write_room`).
        let hint = m.data_len.load(Relaxed);
        let mut data = Vec::with_capacity(hint.max(payload.len()) + Mapper::write_room(&entity));
        if let Err(detail) = src.mapper.write_entity(&mut data, &entity) {
            // Cannot happen for an entity `apply` built; if it did, the event is a dead
            // letter, never an output with an empty body.
            return fail(Rejection::new(Reason::InternalError, detail));
        }
        // Stored only when it grows (or shrinks by half): worker threads share this line.
        if data.len() > hint || data.len() * 2 < hint {
            m.data_len.store(data.len(), Relaxed);
        }
        (
            Outcome {
                status: Status::Routed,
                source,
                canonical_type: Some(m.canonical.clone()),
                attributes: Some(attrs),
                data,
                deliveries: Vec::with_capacity(plans.len()),
                skipped: Vec::new(),
                rejection: None,
                route: None,
            },
            plans,
        )
    }

    /// The state-dependent part, in input order: stale guard, then dedup, per route.
    fn commit(&mut self, out: &mut Outcome, candidates: Vec<Candidate>, now_ms: u64) {
        if out.status == Status::DeadLetter {
            return;
        }
        for c in candidates {
            let r = &mut self.routes[c.route];
            if let (Some(s), Some((key, version))) = (&r.stale, c.stale) {
                if let Some(newest) = s.guard.newer_than(key, version) {
                    out.skipped.push(Skip {
                        route: r.name.clone(),
                        status: Status::Stale,
                        detail: format!("version {version} older than {newest}"),
                    });
                    continue;
                }
            }
            if let (Some(d), Some(key)) = (&mut r.dedup, c.dedup) {
                // committed now (best effort), or by `confirm` once the output's PubAck
                // arrives; a reserved key counts as seen, its first copy being in flight
                let reserve = r.mode == DeliveryMode::AtLeastOnce;
                if !d.cache.admit(key, now_ms, reserve) {
                    out.skipped.push(Skip {
                        route: r.name.clone(),
                        status: Status::Duplicate,
                        detail: format!(
                            "dedup key seen within the window ({:032x})",
                            key.as_u128()
                        ),
                    });
                    continue;
                }
            }
            if let (Some(s), Some((key, version))) = (&mut r.stale, c.stale) {
                s.guard.observe(key, version, now_ms);
            }
            self.counters.route[c.route] += 1;
            out.deliveries.push(Delivery {
                route: r.name.clone(),
                route_ix: c.route,
                subject: c.subject,
                lane: r.lane,
                mode: r.mode,
                dedup_id: c.dedup.map(KeyHash::as_u128),
            });
        }
        out.status = if !out.deliveries.is_empty() {
            Status::Routed
        } else if out.skipped.iter().any(|s| s.status == Status::Stale) {
            Status::Stale
        } else {
            Status::Duplicate
        };
    }
}

fn internal_error(panic: Box<dyn std::any::Any + Send>) -> Outcome {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned());
    Outcome::dead(None, None, Rejection::new(Reason::InternalError, msg))
}

fn key_missing(what: &str, e: RenderError) -> Rejection {
    Rejection::new(Reason::KeyMissing, render_err(what, e))
}

fn render_err(what: &str, e: RenderError) -> String {
    match e {
        RenderError::Missing(f) => format!("{what}: {f} is empty"),
        RenderError::NotScalar(f) => format!("{what}: {f} is not a scalar"),
    }
}

/// A version for the stale guard: an integer, or an RFC 3339 timestamp (microseconds).
fn version_of(v: &Json<'_>) -> Result<i64, String> {
    match v {
        Json::Int(i) => Ok(*i),
        Json::Str(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|_| format!("version {s:?} is not an RFC 3339 timestamp")),
        Json::Null => Err("version is empty".to_owned()),
        other => Err(format!(
            "version {} is not a timestamp or integer",
            other.to_value()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example config's compiled plan (see `benches/pipeline.rs` for how to regenerate it).
    const PLAN: &str = include_str!("../benches/plan.json");

    fn stock_move(id: u64) -> Vec<u8> {
        format!(
            r#"{{"_model": "stock.move", "_id": {id}, "id": {id}, "product_id": 57, "product_uom": 15, "product_uom_qty": 500.0, "quantity": 500.0, "state": "assigned", "date": "2026-11-28 06:00:00", "write_date": "2026-11-27 07:42:10.204517"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn settle_commits_the_acknowledged_keys_and_frees_the_failed_ones() {
        let mut p = Pipeline::from_json(PLAN).expect("plan compiles");
        let now = 1_795_767_400_000;
        // more events than the prefetch reaches ahead, so it runs past both ends
        let events: Vec<Vec<u8>> = (1..=20).map(stock_move).collect();
        let batch = || events.iter().map(|b| ("odoo.stock_move", b.as_slice()));
        let first = p.process_batch(batch(), now);
        assert!(first.iter().all(|o| o.status == Status::Routed));
        // odd events' outputs were acknowledged, even ones' failed
        let settled: Vec<(usize, u128, bool)> = first
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let d = &o.deliveries[0];
                (
                    d.route_ix,
                    d.dedup_id.expect("the route dedups"),
                    i % 2 == 1,
                )
            })
            .collect();
        p.settle(&settled);
        let again = p.process_batch(batch(), now + 1_000);
        for (i, o) in again.iter().enumerate() {
            let want = if i % 2 == 1 {
                Status::Duplicate
            } else {
                Status::Routed
            };
            assert_eq!(o.status, want, "event {i}: {:?}", o.skipped);
        }
    }
}
