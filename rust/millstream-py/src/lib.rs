//! `millstream._core`: thin bindings over `millstream-core`.
//!
//! Batches cross the boundary, not events: the input list is borrowed zero-copy
//! (`PyBackedStr`/`PyBackedBytes`), the GIL is released for the whole batch, and outcomes stay
//! in Rust until Python asks for one. Core errors become `millstream.errors` exceptions here
//! and nowhere else.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use millstream_core::{Outcome as CoreOutcome, Pipeline, Reason, Status};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

// mimalloc: the pipeline allocates per event (JSON values, strings); the system allocator
// is measurably slower at that size class.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49 has no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A process that runs the data plane keeps the memory it frees mapped, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. mimalloc returns memory left free for a second
/// (its default purge delay) to the OS, and the router's per-batch buffers then fault it back
/// in page by page: under steady load the resident size swung up and down every few seconds,
/// and the page faults stalled whole batches, the largest part of the p99 at half of
/// saturation. The cost: the resident size stays at its high mark. Measured in BENCHMARKS.md.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: reads and sets one integer option; mimalloc reads it when it decides to purge.
    // Set only while it holds v3's default of 1000 ms, so a mimalloc whose option layout
    // differs has nothing else changed.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

/// Size of one pretouch block: a few of mimalloc's pages, so freeing them hands whole pages
/// back to its arena, where any thread's next pages come from.
const PRETOUCH_BLOCK: usize = 256 << 10;

/// Fault in `bytes` of heap before the plane starts, then free it; returns the bytes touched.
///
/// Freed memory stays mapped (`keep_freed_memory`), so the pages the router's threads take
/// once events flow are already resident. Untouched, they were faulted in under the first
/// load: on a VM whose memory the host backs lazily each fault is slow, and a router started
/// and then offered 25k events/s stalled for 0.3-2 s while its resident size grew by about
/// 70 MB (BENCHMARKS.md, session 11). The JVM's `-XX:+AlwaysPreTouch` does the same for its
/// heap. Skipped when mimalloc would give the memory back anyway (`MIMALLOC_PURGE_DELAY`).
#[allow(unsafe_code)]
fn pretouch(bytes: usize) -> usize {
    if bytes == 0 || purge_delay_ms() >= 0 {
        return 0;
    }
    // Non-zero contents: a zeroed allocation may be taken as already clear and not written.
    let blocks: Vec<Vec<u8>> = (0..bytes.div_ceil(PRETOUCH_BLOCK))
        .map(|_| vec![1u8; PRETOUCH_BLOCK])
        .collect();
    let touched = std::hint::black_box(&blocks).len() * PRETOUCH_BLOCK;
    drop(blocks);
    // SAFETY: asks mimalloc to return this thread's empty pages to the arena now rather
    // than at this thread's later allocations (its own bookkeeping; no pointers involved).
    unsafe { libmimalloc_sys::mi_collect(true) };
    touched
}

/// The purge delay in effect (ms; -1: never), for `Plane.stats()["allocator"]`.
#[allow(unsafe_code)]
fn purge_delay_ms() -> std::os::raw::c_long {
    // SAFETY: reads one integer option.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// Raise `millstream.errors.<name>(msg)`, the one Python exception hierarchy.
fn py_error(py: Python<'_>, name: &str, msg: String) -> PyErr {
    match py
        .import("millstream.errors")
        .and_then(|m| m.getattr(name))
        .and_then(|cls| cls.call1((msg,)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A compiled plan with its dedup and stale state. Thread-safe; batches run one at a time.
#[pyclass(frozen, module = "millstream._core")]
struct CoreRouter {
    inner: Mutex<Pipeline>,
    name: String,
    version: String,
    dead_letter_prefix: String,
    dead_letter_stream: String,
}

impl CoreRouter {
    fn lock(&self) -> MutexGuard<'_, Pipeline> {
        // A poisoned lock only means an earlier batch panicked outside catch_unwind; the
        // pipeline's state is still usable, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl CoreRouter {
    /// `threads`: worker threads for the stateless stages of a batch (default: one per core).
    #[new]
    #[pyo3(signature = (plan_json, threads=None))]
    fn new(py: Python<'_>, plan_json: &str, threads: Option<usize>) -> PyResult<Self> {
        let plan = plan_json.to_owned();
        let threads = threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        });
        let pipeline = py
            .detach(move || Pipeline::from_json(&plan).and_then(|p| p.with_threads(threads)))
            .map_err(|e| py_error(py, "PlanError", e.to_string()))?;
        Ok(CoreRouter {
            name: pipeline.name.clone(),
            version: pipeline.version.clone(),
            dead_letter_prefix: pipeline.dead_letter.subject_prefix.clone(),
            dead_letter_stream: pipeline.dead_letter.stream.clone(),
            inner: Mutex::new(pipeline),
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn version(&self) -> &str {
        &self.version
    }

    #[getter]
    fn threads(&self) -> usize {
        self.lock().threads()
    }

    #[getter]
    fn dead_letter_stream(&self) -> &str {
        &self.dead_letter_stream
    }

    /// Run a batch of `(subject, payload)` pairs; `now_ms` defaults to the wall clock.
    #[pyo3(signature = (events, now_ms=None))]
    fn process(
        &self,
        py: Python<'_>,
        events: Vec<(PyBackedStr, PyBackedBytes)>,
        now_ms: Option<u64>,
    ) -> BatchResult {
        let now = now_ms.unwrap_or_else(self::now_ms);
        let outcomes = py.detach(|| {
            let mut p = self.lock();
            p.process_batch(events.iter().map(|(s, b)| (&**s, &**b)), now)
        });
        BatchResult {
            outcomes: Arc::new(outcomes),
            dlq_prefix: self.dead_letter_prefix.clone(),
        }
    }

    /// Counters since the router was built: events in, per status, per reason, per route.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = self.lock().stats();
        let d = PyDict::new(py);
        d.set_item("events_in", st.events_in)?;
        let by_status = PyDict::new(py);
        for s in [
            Status::Routed,
            Status::Duplicate,
            Status::Stale,
            Status::DeadLetter,
        ] {
            by_status.set_item(s.as_str(), st.by_status.get(&s).copied().unwrap_or(0))?;
        }
        d.set_item("by_status", by_status)?;
        let by_reason = PyDict::new(py);
        for (r, n) in &st.by_reason {
            by_reason.set_item(r.as_str(), n)?;
        }
        d.set_item("by_reason", by_reason)?;
        let by_route = PyDict::new(py);
        for (r, n) in &st.by_route {
            by_route.set_item(&**r, n)?;
        }
        d.set_item("by_route", by_route)?;
        Ok(d)
    }

    /// Per route: remembered dedup and stale keys and the bytes they occupy.
    fn memory<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mem = self.lock().memory();
        let out = PyList::empty(py);
        for m in mem {
            let d = PyDict::new(py);
            d.set_item("route", &*m.route)?;
            d.set_item("dedup_keys", m.dedup_keys)?;
            d.set_item("dedup_bytes", m.dedup_bytes)?;
            d.set_item("stale_keys", m.stale_keys)?;
            d.set_item("stale_bytes", m.stale_bytes)?;
            out.append(d)?;
        }
        Ok(out)
    }
}

/// The outcomes of one batch, in input order. Outcome objects are built on access.
#[pyclass(frozen, sequence, module = "millstream._core")]
struct BatchResult {
    outcomes: Arc<Vec<CoreOutcome>>,
    dlq_prefix: String,
}

#[pymethods]
impl BatchResult {
    fn __len__(&self) -> usize {
        self.outcomes.len()
    }

    fn __getitem__(&self, index: isize) -> PyResult<Outcome> {
        let n = self.outcomes.len() as isize;
        let i = if index < 0 { index + n } else { index };
        if i < 0 || i >= n {
            return Err(PyIndexError::new_err("outcome index out of range"));
        }
        Ok(Outcome {
            batch: self.outcomes.clone(),
            index: i as usize,
            dlq_prefix: self.dlq_prefix.clone(),
        })
    }

    /// The status of every outcome, in order.
    fn statuses(&self) -> Vec<&'static str> {
        self.outcomes.iter().map(|o| o.status.as_str()).collect()
    }

    /// How many outcomes have each status.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for s in [
            Status::Routed,
            Status::Duplicate,
            Status::Stale,
            Status::DeadLetter,
        ] {
            let n = self.outcomes.iter().filter(|o| o.status == s).count();
            d.set_item(s.as_str(), n)?;
        }
        Ok(d)
    }
}

/// A delivery of a routed event to one destination.
#[pyclass(frozen, get_all, module = "millstream._core")]
struct Delivery {
    route: String,
    subject: String,
    lane: &'static str,
    delivery: &'static str,
    dedup_id: Option<String>,
}

#[pymethods]
impl Delivery {
    fn __repr__(&self) -> String {
        format!(
            "Delivery(route={:?}, subject={:?}, lane={:?}, delivery={:?})",
            self.route, self.subject, self.lane, self.delivery
        )
    }
}

/// What happened to one event: `routed`, `duplicate`, `stale` or `dead_letter`.
#[pyclass(frozen, module = "millstream._core")]
struct Outcome {
    batch: Arc<Vec<CoreOutcome>>,
    index: usize,
    dlq_prefix: String,
}

impl Outcome {
    fn get(&self) -> &CoreOutcome {
        &self.batch[self.index]
    }
}

fn hex_id(id: u128) -> String {
    format!("{id:032x}")
}

#[pymethods]
impl Outcome {
    #[getter]
    fn status(&self) -> &'static str {
        self.get().status.as_str()
    }

    #[getter]
    fn source(&self) -> Option<String> {
        self.get().source.as_deref().map(str::to_owned)
    }

    /// Canonical type name, e.g. `inventory_movement`.
    #[getter]
    fn canonical_type(&self) -> Option<String> {
        self.get().canonical_type.as_deref().map(str::to_owned)
    }

    /// CloudEvents id of the canonical event (also its `Nats-Msg-Id`).
    #[getter]
    fn id(&self) -> Option<String> {
        self.get().attributes.as_ref().map(|a| a.id().to_owned())
    }

    /// CloudEvents 1.0 attributes as a dict (absent optional attributes are left out).
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(a) = &self.get().attributes else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("specversion", "1.0")?;
        d.set_item("id", a.id())?;
        d.set_item("source", &*a.source)?;
        d.set_item("type", &*a.ce_type)?;
        d.set_item("datacontenttype", "application/json")?;
        d.set_item("dataschema", &*a.dataschema)?;
        for (k, v) in [
            ("time", a.time()),
            ("subject", a.subject()),
            ("partitionkey", a.partitionkey()),
        ] {
            if let Some(v) = v {
                d.set_item(k, v)?;
            }
        }
        Ok(Some(d))
    }

    /// The canonical entity as JSON bytes (empty for dead letters).
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.get().data)
    }

    #[getter]
    fn deliveries(&self) -> Vec<Delivery> {
        self.get()
            .deliveries
            .iter()
            .map(|d| Delivery {
                route: d.route.to_string(),
                subject: d.subject.clone(),
                lane: d.lane.as_str(),
                delivery: d.mode.as_str(),
                dedup_id: d.dedup_id.map(hex_id),
            })
            .collect()
    }

    /// Destination subjects, in route order.
    #[getter]
    fn destinations(&self) -> Vec<String> {
        self.get()
            .deliveries
            .iter()
            .map(|d| d.subject.clone())
            .collect()
    }

    /// Names of the routes that delivered the event.
    #[getter]
    fn routes(&self) -> Vec<String> {
        self.get()
            .deliveries
            .iter()
            .map(|d| d.route.to_string())
            .collect()
    }

    /// The most critical lane among the deliveries.
    #[getter]
    fn lane(&self) -> Option<&'static str> {
        self.get().lane().map(|l| l.as_str())
    }

    /// The dedup id (hex of the 128-bit key hash) of the first delivery that has one.
    #[getter]
    fn dedup_id(&self) -> Option<String> {
        self.get()
            .deliveries
            .iter()
            .find_map(|d| d.dedup_id)
            .map(hex_id)
    }

    /// Routes that skipped the event: `(route, "duplicate" | "stale", detail)`.
    #[getter]
    fn skipped(&self) -> Vec<(String, &'static str, String)> {
        self.get()
            .skipped
            .iter()
            .map(|s| (s.route.to_string(), s.status.as_str(), s.detail.clone()))
            .collect()
    }

    /// Dead-letter reason code, e.g. `duplicate_key`.
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        self.get().rejection.as_ref().map(|r| r.reason.as_str())
    }

    #[getter]
    fn detail(&self) -> Option<String> {
        self.get().rejection.as_ref().map(|r| r.detail.clone())
    }

    /// The route a rejection belongs to (predicate or destination failures).
    #[getter]
    fn route(&self) -> Option<String> {
        self.get().route.as_deref().map(str::to_owned)
    }

    /// Where the dead letter goes: `<prefix>.<reason>`.
    #[getter]
    fn dead_letter_subject(&self) -> Option<String> {
        self.get()
            .rejection
            .as_ref()
            .map(|r| format!("{}.{}", self.dlq_prefix, r.reason.as_str()))
    }

    fn __repr__(&self) -> String {
        let o = self.get();
        match &o.rejection {
            Some(r) => format!(
                "Outcome(dead_letter, reason={:?}, detail={:?})",
                r.reason.as_str(),
                r.detail
            ),
            None => format!(
                "Outcome({}, type={:?}, destinations={:?})",
                o.status.as_str(),
                o.canonical_type.as_deref().unwrap_or(""),
                o.deliveries
                    .iter()
                    .map(|d| d.subject.as_str())
                    .collect::<Vec<_>>()
            ),
        }
    }
}

/// Every dead-letter reason code the core can emit.
#[pyfunction]
fn reason_codes() -> Vec<&'static str> {
    Reason::ALL.iter().map(|r| r.as_str()).collect()
}

/// The running data plane: NATS in, pipeline, NATS out, all in Rust on its own tokio
/// runtime. Every method releases the GIL while it waits.
#[pyclass(frozen, module = "millstream._core")]
struct Plane {
    inner: Mutex<millstream_core::plane::Plane>,
    /// For gRPC calls: works while `inner` is locked by a drain.
    handle: Option<millstream_core::plane::PlaneHandle>,
    threads: usize,
    /// Heap faulted in before the start (`pretouch`), for `stats()`.
    pretouched: usize,
    replies: Replies,
}

/// A result for a Python callback: (value or None, error or None).
type Answer = Result<Option<(Vec<u8>, Option<u64>)>, String>;

/// Callbacks into Python run on one thread of their own: a plane task waiting for the GIL
/// would stall every event behind it.
#[derive(Clone)]
struct Replies(std::sync::mpsc::Sender<(Py<PyAny>, Answer)>);

impl Replies {
    fn start() -> PyResult<Replies> {
        let (tx, rx) = std::sync::mpsc::channel::<(Py<PyAny>, Answer)>();
        std::thread::Builder::new()
            .name("millstream-replies".into())
            .spawn(move || {
                while let Ok((done, answer)) = rx.recv() {
                    Python::attach(|py| {
                        let args = match answer {
                            Ok(None) => (py.None(), py.None()),
                            Ok(Some((bytes, None))) => {
                                (PyBytes::new(py, &bytes).into_any().unbind(), py.None())
                            }
                            Ok(Some((bytes, Some(seq)))) => {
                                match (PyBytes::new(py, &bytes), seq).into_pyobject(py) {
                                    Ok(t) => (t.into_any().unbind(), py.None()),
                                    Err(e) => return e.write_unraisable(py, None),
                                }
                            }
                            Err(e) => (py.None(), PyString::new(py, &e).into_any().unbind()),
                        };
                        if let Err(e) = done.call1(py, args) {
                            e.write_unraisable(py, None);
                        }
                    });
                }
            })
            .map_err(|e| PyErr::new::<pyo3::exceptions::PyRuntimeError, _>(e.to_string()))?;
        Ok(Replies(tx))
    }

    fn send(&self, done: Py<PyAny>, answer: Answer) {
        // Fails only once the Plane object is gone, and with it whoever waits.
        let _ = self.0.send((done, answer));
    }
}

fn plane_error(py: Python<'_>, e: millstream_core::plane::PlaneError) -> PyErr {
    match e {
        millstream_core::plane::PlaneError::Invalid(m) => {
            PyErr::new::<pyo3::exceptions::PyValueError, _>(m)
        }
        e => py_error(py, "PlaneError", e.to_string()),
    }
}

/// One `Router.Subscribe` call's reader (see `Plane.subscribe`).
#[pyclass(frozen, module = "millstream._core")]
struct Subscription {
    inner: millstream_core::plane::Subscription,
    replies: Replies,
}

#[pymethods]
impl Subscription {
    /// `done((batch, last_sequence), None)` with the next serialised SubscribeResponse,
    /// `done(None, None)` at the end, `done(None, error)` on failure.
    fn next(&self, done: Py<PyAny>) {
        let replies = self.replies.clone();
        self.inner.next(Box::new(move |r| {
            replies.send(done, r.map(|b| b.map(|(bytes, seq)| (bytes, Some(seq)))));
        }));
    }

    fn close(&self) {
        self.inner.close();
    }
}

impl Plane {
    fn lock(&self) -> MutexGuard<'_, millstream_core::plane::Plane> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let text = v.to_string();
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

#[pymethods]
impl Plane {
    /// Connect to NATS, restore dedup/stale state, subscribe and start routing.
    /// `threads`: workers for the pipeline's stateless stages (1 leaves the other core to
    /// nats-server and the NATS client).
    #[new]
    #[pyo3(signature = (plan_json, plane_json, threads=1))]
    fn new(py: Python<'_>, plan_json: &str, plane_json: &str, threads: usize) -> PyResult<Self> {
        keep_freed_memory();
        let pipeline = Pipeline::from_json(plan_json)
            .and_then(|p| p.with_threads(threads))
            .map_err(|e| py_error(py, "PlanError", e.to_string()))?;
        let spec: millstream_core::plane::PlaneSpec = serde_json::from_str(plane_json)
            .map_err(|e| py_error(py, "PlaneError", format!("bad data-plane spec: {e}")))?;
        let pretouched = py.detach(|| pretouch(spec.pretouch_bytes));
        let plane = py
            .detach(move || millstream_core::plane::Plane::start(pipeline, spec))
            .map_err(|e| py_error(py, "PlaneError", e.to_string()))?;
        Ok(Plane {
            handle: plane.handle(),
            inner: Mutex::new(plane),
            threads,
            pretouched,
            replies: Replies::start()?,
        })
    }

    /// Route a serialised PublishRequest; `done(response, None)` or `done(None, error)`
    /// is called from the plane's reply thread.
    fn publish(&self, py: Python<'_>, request: &[u8], done: Py<PyAny>) -> PyResult<()> {
        let handle = self
            .handle
            .as_ref()
            .ok_or_else(|| plane_error(py, millstream_core::plane::PlaneError::Stopped))?;
        let replies = self.replies.clone();
        handle
            .publish(
                request,
                Box::new(move |r| replies.send(done, r.map(|b| Some((b, None))))),
            )
            .map_err(|e| plane_error(py, e))
    }

    /// Start reading canonical events for Router.Subscribe.
    fn subscribe(&self, py: Python<'_>, spec_json: &str) -> PyResult<Subscription> {
        let handle = self
            .handle
            .as_ref()
            .ok_or_else(|| plane_error(py, millstream_core::plane::PlaneError::Stopped))?;
        let spec: millstream_core::plane::SubscriptionSpec = serde_json::from_str(spec_json)
            .map_err(|e| {
                PyErr::new::<pyo3::exceptions::PyValueError, _>(format!(
                    "bad subscription spec: {e}"
                ))
            })?;
        let inner = handle.subscribe(spec).map_err(|e| plane_error(py, e))?;
        Ok(Subscription {
            inner,
            replies: self.replies.clone(),
        })
    }

    /// Swap in a new plan between two batches; returns the previous plan version.
    #[pyo3(signature = (plan_json, timeout_s=10.0))]
    fn reload(&self, py: Python<'_>, plan_json: &str, timeout_s: f64) -> PyResult<String> {
        let handle = self
            .handle
            .as_ref()
            .ok_or_else(|| plane_error(py, millstream_core::plane::PlaneError::Stopped))?;
        let pipeline = Pipeline::from_json(plan_json)
            .and_then(|p| p.with_threads(self.threads))
            .map_err(|e| py_error(py, "PlanError", e.to_string()))?;
        let timeout = std::time::Duration::from_secs_f64(timeout_s.max(0.0));
        py.detach(|| handle.reload(pipeline, timeout))
            .map_err(|e| plane_error(py, e))
    }

    /// Counters, lane depths, latency histograms and connection state (a fresh dict).
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut v = py.detach(|| self.lock().stats());
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "allocator".into(),
                serde_json::json!({
                    "purge_delay_ms": purge_delay_ms(),
                    "pretouched_bytes": self.pretouched,
                }),
            );
        }
        json_to_py(py, &v)
    }

    /// Stop intake, finish queued batches, await PubAcks, ack inputs, save state,
    /// disconnect. Idempotent; returns the final stats.
    fn drain(&self, py: Python<'_>, timeout_s: f64) -> PyResult<Py<PyAny>> {
        let timeout = std::time::Duration::from_secs_f64(timeout_s.max(0.0));
        let v = py
            .detach(|| self.lock().drain(timeout))
            .map_err(|e| py_error(py, "PlaneError", e.to_string()))?;
        json_to_py(py, &v)
    }

    /// Save dedup and stale state now; returns the number of keys written.
    fn snapshot(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.lock().snapshot())
            .map_err(|e| py_error(py, "PlaneError", e.to_string()))
    }

    #[getter]
    fn running(&self) -> bool {
        self.lock().running()
    }
}

/// `run_load`'s spec as Python writes it (`millstream.bench.e2e.Load.spec`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadSpecJson {
    url: String,
    templates: Vec<(String, String)>,
    base_ts_ms: u64,
    rate_per_s: f64,
    duration_s: f64,
    warmup_s: f64,
    publish: PublishJson,
    sink: SinkJson,
    marker: String,
    settle_s: f64,
}

#[derive(serde::Deserialize)]
enum PublishJson {
    #[serde(rename = "core")]
    Core,
    #[serde(rename = "jetstream")]
    JetStream { window: usize },
}

#[derive(serde::Deserialize)]
enum SinkJson {
    #[serde(rename = "core")]
    Core { subject: String },
    #[serde(rename = "stream")]
    Stream {
        stream: String,
        filter: Option<String>,
    },
}

fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(s.max(0.0))
}

/// Run the end-to-end benchmark's open-loop generator and counting sink (Rust, its own
/// runtime) and return the sink's report. `progress(dict)` is called about twice a second.
#[pyfunction]
#[pyo3(signature = (spec_json, progress=None))]
fn run_load(py: Python<'_>, spec_json: &str, progress: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    use millstream_loadgen as lg;
    let j: LoadSpecJson = serde_json::from_str(spec_json)
        .map_err(|e| py_error(py, "MillstreamError", format!("bad load spec: {e}")))?;
    let spec = lg::LoadSpec {
        url: j.url,
        templates: j.templates,
        base_ts_ms: j.base_ts_ms,
        rate_per_s: j.rate_per_s,
        duration: secs(j.duration_s),
        warmup: secs(j.warmup_s),
        publish: match j.publish {
            PublishJson::Core => lg::Publish::Core,
            PublishJson::JetStream { window } => lg::Publish::JetStream { window },
        },
        sink: match j.sink {
            SinkJson::Core { subject } => lg::Sink::Core { subject },
            SinkJson::Stream { stream, filter } => lg::Sink::Stream { stream, filter },
        },
        marker: j.marker,
        settle: secs(j.settle_s),
    };
    let report = py.detach(|| {
        let show = |p: &lg::Progress| {
            if let Some(cb) = &progress {
                Python::attach(|py| {
                    let d = PyDict::new(py);
                    let _ = d.set_item("elapsed_s", p.elapsed_s);
                    let _ = d.set_item("sent", p.sent);
                    let _ = d.set_item("received", p.received);
                    // a failing progress callback must not stop the measurement
                    let _ = cb.call1(py, (d,));
                });
            }
        };
        lg::run(&spec, &show)
    });
    let r = report.map_err(|e| py_error(py, "MillstreamError", e.to_string()))?;
    let v = serde_json::json!({
        "sent": r.sent,
        "publish_errors": r.publish_errors,
        "received": r.received,
        "distinct": r.distinct,
        "duplicates": r.duplicates,
        "lost": r.lost,
        "unparsable": r.unparsable,
        "offered_per_s": r.offered_per_s,
        "delivered_per_s": r.delivered_per_s,
        "output_per_s": r.output_per_s,
        "last_receive_s": r.last_receive_s,
        "latency_ms": {
            "p50": r.latency_ms.p50,
            "p99": r.latency_ms.p99,
            "p999": r.latency_ms.p999,
            "max": r.latency_ms.max,
        },
        "generator_lag_ms": r.generator_lag_ms,
        "elapsed_s": r.elapsed_s,
        "sink_closed": r.sink_closed,
    });
    json_to_py(py, &v)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CoreRouter>()?;
    m.add_class::<BatchResult>()?;
    m.add_class::<Outcome>()?;
    m.add_class::<Delivery>()?;
    m.add_class::<Plane>()?;
    m.add_class::<Subscription>()?;
    m.add_function(wrap_pyfunction!(reason_codes, m)?)?;
    m.add_function(wrap_pyfunction!(run_load, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
