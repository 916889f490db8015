//! The data plane (decision 2): events arrive and leave over NATS, in Rust, on a tokio
//! runtime this module owns. Python starts, drains and stops it through `Plane`.
//!
//! ```text
//! ingest (core subscriptions on the plane's own connection or async-nats, JetStream pull
//!         consumers)
//!   -> lanes (bounded queue per lane: critical served first, bulk sheds first)
//!   -> worker (one task: the pipeline's batch call, in input order)
//!   -> egress (core publish, JetStream publish with PubAck window, dead letters, input acks)
//! state: dedup and stale-guard snapshots in a JetStream object store, restored at start.
//! ```

mod egress;
mod ingest;
mod ingest_wire;
mod lanes;
mod metrics;
mod publish;
mod reload;
mod state;
mod subscribe;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::{Classifier, Pipeline};
use crate::plan::Lane;

pub use metrics::Metrics;
pub use publish::Done;
pub use subscribe::{Subscription, SubscriptionSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaneSpec {
    pub url: String,
    pub client_name: String,
    pub inputs: Vec<InputSpec>,
    pub lanes: LanesSpec,
    /// Output PubAcks in flight at most (the publish window).
    pub publish_window: usize,
    pub state: Option<StateSpec>,
    /// Skip every stage and relay each input unchanged to `passthrough.<subject>`: the
    /// ceiling the end-to-end benchmark compares against.
    #[serde(default)]
    pub passthrough: bool,
    /// Heap to fault in before routing starts (bytes; 0: none). The core only carries it:
    /// the extension, which owns the allocator, touches it (`millstream-py`).
    #[serde(default)]
    pub pretouch_bytes: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub source: String,
    pub subjects: Vec<String>,
    pub queue_group: Option<String>,
    pub jetstream: Option<JsInputSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsInputSpec {
    pub stream: String,
    pub durable: String,
    pub batch: usize,
    /// After this many deliveries an event whose output keeps failing becomes a dead letter.
    pub max_deliver: i64,
    /// Nak delays by delivery attempt; the last one repeats.
    pub backoff_ms: Vec<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanesSpec {
    pub critical: LaneSpec,
    pub standard: LaneSpec,
    pub bulk: LaneSpec,
}

impl LanesSpec {
    fn get(&self, lane: Lane) -> &LaneSpec {
        match lane {
            Lane::Critical => &self.critical,
            Lane::Standard => &self.standard,
            Lane::Bulk => &self.bulk,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneSpec {
    pub queue: usize,
    pub batch: usize,
    pub objective_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    pub bucket: String,
    pub snapshot_every_ms: u64,
    /// Periodic saves' pace into the object store (0: unpaced).
    pub snapshot_bytes_per_s: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error("bad data-plane spec: {0}")]
    Spec(String),
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("input {source_name}: {detail}")]
    Input { source_name: String, detail: String },
    #[error("state bucket {bucket}: {detail}")]
    State { bucket: String, detail: String },
    #[error("data plane: {0}")]
    Runtime(String),
    /// A request or spec from the caller that cannot be used (raised as ValueError).
    #[error("{0}")]
    Invalid(String),
    #[error("the data plane is not running")]
    Stopped,
}

/// What a config reload replaces while tasks keep reading it: each reader loads it once per
/// batch or event.
pub(crate) struct Routing {
    /// Bumped by every reload: caches keyed by route position (egress headers, ingest
    /// lanes) start again when it changes.
    pub generation: u64,
    pub route_ix: HashMap<Arc<str>, usize>,
    pub config_version: String,
    pub classifier: Classifier,
}

impl Routing {
    fn of(pipeline: &Pipeline, generation: u64) -> Routing {
        Routing {
            generation,
            route_ix: pipeline
                .route_names()
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, i))
                .collect(),
            config_version: pipeline.version.clone(),
            classifier: pipeline.classifier(),
        }
    }
}

/// What every task of the plane shares.
pub(crate) struct Shared {
    pipeline: Mutex<Pipeline>,
    metrics: Arc<Metrics>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Outputs go here when the URL allows (see `wire`), else through `client` and `js`.
    wire: Option<wire::Wire>,
    /// Tasks awaiting PubAcks before they ack an input: drain waits for all of them.
    inflight: TaskTracker,
    dead_letter_prefix: String,
    passthrough: bool,
    routing: arc_swap::ArcSwap<Routing>,
    /// Where gRPC publishes enter the lanes; taken away when the plane drains.
    publish_senders: Mutex<Option<lanes::LaneSenders>>,
    /// Held by the worker for each batch it runs, and by a reload while it swaps the plan.
    turn: tokio::sync::Mutex<()>,
    /// Batches handed to egress and not yet dispatched, and batches awaiting PubAcks: a
    /// reload waits for both to reach zero, so no settlement uses the old route positions.
    egress_queued: AtomicUsize,
    settling: AtomicUsize,
    /// Dedup and stale changes are journalled for snapshots (a reloaded plan must too).
    tracks_state: bool,
}

impl Shared {
    /// The pipeline, even if a task panicked while holding it (the pipeline's own state is
    /// updated per event under `catch_unwind`, so it stays consistent).
    fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.routing.load()
    }

    fn publish_senders(&self) -> Option<lanes::LaneSenders> {
        self.publish_senders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What gRPC calls use while the plane runs: cheap to clone, independent of `Plane`'s
/// lifecycle methods (a drain in progress does not block them).
#[derive(Clone)]
pub struct PlaneHandle {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

impl PlaneHandle {
    /// Decode a serialised `PublishRequest` and queue its events; `done` gets the
    /// serialised `PublishResponse` once every event has its verdict.
    pub fn publish(&self, request: &[u8], done: Done) -> Result<(), PlaneError> {
        let req = publish::decode(request).map_err(PlaneError::Invalid)?;
        // Held by the call until its events are queued: a drain that starts meanwhile
        // waits for them instead of refusing half a batch.
        let senders = self.shared.publish_senders().ok_or(PlaneError::Stopped)?;
        self.runtime
            .spawn(publish::enqueue(self.shared.clone(), senders, req, done));
        Ok(())
    }

    /// Start reading canonical events for a `Router.Subscribe` call.
    pub fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, PlaneError> {
        subscribe::start(&self.shared, &self.runtime, spec)
    }

    /// Swap in a new plan between two batches (see `reload`); returns the previous version.
    pub fn reload(&self, pipeline: Pipeline, timeout: Duration) -> Result<String, PlaneError> {
        self.runtime
            .block_on(reload::swap(self.shared.clone(), pipeline, timeout))
    }
}

/// A running data plane. Dropping it without `drain` stops it abruptly (inputs that were
/// not acked are redelivered by JetStream; nothing acked is lost).
pub struct Plane {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    ingest: Vec<JoinHandle<()>>,
    stop_intake: CancellationToken,
    worker: Option<JoinHandle<()>>,
    snapshots: Option<(state::StateStore, JoinHandle<()>)>,
    final_stats: Option<serde_json::Value>,
}

impl Plane {
    /// Connect, restore state, subscribe and start routing.
    pub fn start(pipeline: Pipeline, spec: PlaneSpec) -> Result<Plane, PlaneError> {
        for lane in [Lane::Critical, Lane::Standard, Lane::Bulk] {
            let l = spec.lanes.get(lane);
            if l.queue == 0 || l.batch == 0 {
                return Err(PlaneError::Spec(format!(
                    "lane {}: queue and batch must be at least 1",
                    lane.as_str()
                )));
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("millstream-plane")
            .enable_all()
            .build()
            .map_err(|e| PlaneError::Runtime(e.to_string()))?;
        let metrics = Arc::new(Metrics::new(pipeline.route_names()));
        let stop_intake = CancellationToken::new();
        let started = runtime.block_on(Self::start_async(
            pipeline,
            spec,
            metrics,
            stop_intake.clone(),
        ));
        match started {
            Ok((shared, ingest, worker, snapshots)) => Ok(Plane {
                runtime: Some(runtime),
                shared,
                ingest,
                stop_intake,
                worker: Some(worker),
                snapshots,
                final_stats: None,
            }),
            Err(e) => {
                runtime.shutdown_timeout(Duration::from_secs(1));
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn start_async(
        pipeline: Pipeline,
        spec: PlaneSpec,
        metrics: Arc<Metrics>,
        stop_intake: CancellationToken,
    ) -> Result<
        (
            Arc<Shared>,
            Vec<JoinHandle<()>>,
            JoinHandle<()>,
            Option<(state::StateStore, JoinHandle<()>)>,
        ),
        PlaneError,
    > {
        let events = metrics.clone();
        let client = async_nats::ConnectOptions::new()
            .name(&spec.client_name)
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            // Room for bursts between two worker batches; a subscription that still falls
            // behind is reported by the server as a slow consumer and counted.
            .subscription_capacity(1 << 16)
            .client_capacity(1 << 14)
            .event_callback(move |event| {
                let m = events.clone();
                async move { m.on_nats_event(&event) }
            })
            .connect(spec.url.as_str())
            .await
            .map_err(|e| PlaneError::Connect {
                url: spec.url.clone(),
                detail: e.to_string(),
            })?;
        metrics.set_connected(true);
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(spec.publish_window.max(1))
            .backpressure_on_inflight(true)
            .build(client.clone());
        let wire = match wire::target(&spec.url) {
            None => None,
            Some(target) => wire::Wire::connect(
                target,
                &spec.client_name,
                client.new_inbox(),
                spec.publish_window,
                metrics.clone(),
            )
            .await
            .map_err(|detail| PlaneError::Connect {
                url: spec.url.clone(),
                detail: format!("egress connection: {detail}"),
            })?,
        };

        let mut pipeline = pipeline;
        let snapshots = match &spec.state {
            None => None,
            Some(s) => {
                let store =
                    state::StateStore::open(&js, &s.bucket, &pipeline.name, s.snapshot_bytes_per_s)
                        .await?;
                store.restore(&mut pipeline).await?;
                Some((store, s.snapshot_every_ms))
            }
        };
        let tracks_state = snapshots.is_some();
        let (senders, receivers) = lanes::channels(&spec.lanes, metrics.clone());
        let shared = Arc::new(Shared {
            dead_letter_prefix: pipeline.dead_letter.subject_prefix.clone(),
            routing: arc_swap::ArcSwap::from_pointee(Routing::of(&pipeline, 0)),
            pipeline: Mutex::new(pipeline),
            metrics: metrics.clone(),
            client: client.clone(),
            js: js.clone(),
            wire,
            inflight: TaskTracker::new(),
            passthrough: spec.passthrough,
            publish_senders: Mutex::new(Some(senders.clone())),
            turn: tokio::sync::Mutex::new(()),
            egress_queued: AtomicUsize::new(0),
            settling: AtomicUsize::new(0),
            tracks_state,
        });
        let wire_to = wire::target(&spec.url).map(|target| ingest::WireTo {
            target,
            url: &spec.url,
            client_name: &spec.client_name,
        });
        let ingest = ingest::start(
            &client,
            &js,
            wire_to,
            &spec.inputs,
            &senders,
            &shared,
            &metrics,
            &stop_intake,
        )
        .await?;
        drop(senders);
        // A SUB is only buffered by the client until the server has seen it: flush (a
        // PING/PONG round trip) so that "started" means "subscribed", and an event published
        // right after start is not missed. (The ingest connection waited for its own PONG.)
        client
            .flush()
            .await
            .map_err(|e| PlaneError::Runtime(format!("flush after subscribing: {e}")))?;
        let worker = tokio::spawn(lanes::worker(shared.clone(), receivers));
        let snapshots = snapshots.map(|(store, every)| {
            let task = tokio::spawn(state::every(store.clone(), shared.clone(), every));
            (store, task)
        });
        Ok((shared, ingest, worker, snapshots))
    }

    /// Counters, lane depths and latency histograms as JSON.
    pub fn stats(&self) -> serde_json::Value {
        if let Some(s) = &self.final_stats {
            return s.clone();
        }
        let pipeline = self.shared.pipeline().stats();
        self.shared.metrics.snapshot(&pipeline)
    }

    pub fn running(&self) -> bool {
        self.runtime.is_some()
    }

    /// A handle for gRPC calls; None once drained.
    pub fn handle(&self) -> Option<PlaneHandle> {
        self.runtime.as_ref().map(|rt| PlaneHandle {
            shared: self.shared.clone(),
            runtime: rt.handle().clone(),
        })
    }

    /// Save dedup and stale state now; returns how many keys were written.
    pub fn snapshot(&self) -> Result<usize, PlaneError> {
        let (Some(rt), Some((store, _))) = (&self.runtime, &self.snapshots) else {
            return Ok(0);
        };
        rt.block_on(store.save(&self.shared, state::Pace::AtOnce))
    }

    /// Stop intake, finish every queued batch, wait for outstanding PubAcks and ack their
    /// inputs, save state, flush, disconnect. Idempotent; returns the final stats.
    pub fn drain(&mut self, timeout: Duration) -> Result<serde_json::Value, PlaneError> {
        let Some(rt) = self.runtime.take() else {
            return Ok(self.stats());
        };
        let shared = self.shared.clone();
        let ingest = std::mem::take(&mut self.ingest);
        let worker = self.worker.take();
        let snapshots = self.snapshots.take();
        let stop_intake = self.stop_intake.clone();
        let result = rt.block_on(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // 1. stop intake: subscriptions end, the pull in progress finishes its batch. The
            //    ingest tasks own the lane senders, so their end closes the lanes once what is
            //    queued has been taken.
            stop_intake.cancel();
            shared
                .publish_senders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            for mut task in ingest {
                if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                    task.abort();
                }
            }
            // 2. the worker finishes every queued batch, then stops.
            if let Some(w) = worker {
                if tokio::time::timeout_at(deadline, w).await.is_err() {
                    return Err(PlaneError::Runtime(
                        "drain timed out while batches were still queued".into(),
                    ));
                }
            }
            // 3. outstanding PubAcks, then the input acks that wait on them.
            shared.inflight.close();
            if tokio::time::timeout_at(deadline, shared.inflight.wait())
                .await
                .is_err()
            {
                return Err(PlaneError::Runtime(
                    "drain timed out waiting for PubAcks".into(),
                ));
            }
            // 4. state, then the last bytes to the server.
            if let Some((store, task)) = snapshots {
                task.abort();
                store.save(&shared, state::Pace::AtOnce).await?;
            }
            let _ = shared.client.flush().await;
            if let Some(w) = &shared.wire {
                w.flush(Duration::from_secs(5)).await;
            }
            Ok(())
        });
        self.final_stats = None;
        let stats = self.stats();
        self.final_stats = Some(stats.clone());
        rt.shutdown_timeout(Duration::from_secs(2));
        result.map(|()| stats)
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
