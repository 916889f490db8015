//! Counters and latency histograms of the data plane: atomics bumped by its tasks, read as
//! one JSON snapshot by the control plane (which exports them to Prometheus).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::pipeline::Stats;
use crate::Reason;

/// Upper bounds (ms) of the latency buckets: ingest to the last PubAck (or hand-over to
/// the client for best-effort outputs).
pub const LATENCY_BOUNDS_MS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

#[derive(Default)]
pub struct LaneMetrics {
    pub(crate) depth: AtomicI64,
    capacity: AtomicU64,
    pub(crate) shed: AtomicU64,
    processed: AtomicU64,
    /// Batches the worker took; processed / batches is the mean batch size, which says how
    /// much each batch's fixed costs (a hand-over to egress, a settling task) are shared.
    batches: AtomicU64,
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl LaneMetrics {
    pub(crate) fn set_capacity(&self, n: usize) {
        self.capacity.store(n as u64, Relaxed);
    }
    pub(crate) fn queued(&self) {
        self.depth.fetch_add(1, Relaxed);
    }
    pub(crate) fn taken(&self, n: usize) {
        self.depth.fetch_sub(n as i64, Relaxed);
        self.processed.fetch_add(n as u64, Relaxed);
        self.batches.fetch_add(1, Relaxed);
    }
    pub(crate) fn shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }
    pub(crate) fn observe(&self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let i = LATENCY_BOUNDS_MS.partition_point(|&b| b < ms);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }
}

#[derive(Default)]
pub struct RouteMetrics {
    pub(crate) out: AtomicU64,
    pub(crate) duplicate: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) dead_letter: AtomicU64,
    pub(crate) failed: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    /// By route position in the running plan; a reload swaps it, keeping the counters of
    /// the routes it keeps.
    pub(crate) routes: arc_swap::ArcSwap<Vec<(Arc<str>, Arc<RouteMetrics>)>>,
    /// Events that arrived over gRPC (Router.Publish/PublishStream).
    pub(crate) grpc_events: AtomicU64,
    pub(crate) lanes: [LaneMetrics; 3],
    pub(crate) received: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) outputs_acked: AtomicU64,
    pub(crate) outputs_failed: AtomicU64,
    pub(crate) naks: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) dead_letter_failed: AtomicU64,
    pub(crate) relayed: AtomicU64,
    connected: AtomicBool,
    connects: AtomicU64,
    disconnects: AtomicU64,
    slow_consumer: AtomicU64,
    pub(crate) egress: ConnMetrics,
    pub(crate) ingest: ConnMetrics,
    last_error: Mutex<Option<String>>,
}

/// The state of one of the plane's own connections, when it has it: egress (see `wire`)
/// or ingest (see `ingest_wire`).
#[derive(Default)]
pub(crate) struct ConnMetrics {
    pub(crate) present: AtomicBool,
    pub(crate) connected: AtomicBool,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl ConnMetrics {
    fn snapshot(&self) -> Option<Value> {
        self.present.load(Relaxed).then(|| {
            json!({
                "connected": self.connected.load(Relaxed),
                "reconnects": self.reconnects.load(Relaxed),
                "disconnects": self.disconnects.load(Relaxed),
            })
        })
    }
}

impl Metrics {
    pub fn new(routes: Vec<Arc<str>>) -> Metrics {
        Metrics {
            routes: arc_swap::ArcSwap::from_pointee(
                routes
                    .into_iter()
                    .map(|r| (r, Arc::new(RouteMetrics::default())))
                    .collect(),
            ),
            ..Metrics::default()
        }
    }

    pub(crate) fn route(&self, ix: usize) -> Option<Arc<RouteMetrics>> {
        self.routes.load().get(ix).map(|(_, m)| m.clone())
    }

    pub(crate) fn route_name(&self, ix: usize) -> Arc<str> {
        self.routes
            .load()
            .get(ix)
            .map_or_else(|| Arc::from("?"), |(n, _)| n.clone())
    }

    /// A reload's new route list: counters carry over by name.
    pub(crate) fn set_routes(&self, names: Vec<Arc<str>>) {
        let old = self.routes.load_full();
        let by_name: std::collections::HashMap<&str, &Arc<RouteMetrics>> =
            old.iter().map(|(n, m)| (&**n, m)).collect();
        let new = names
            .into_iter()
            .map(|n| {
                let m = by_name
                    .get(&*n)
                    .map_or_else(Default::default, |m| (*m).clone());
                (n, m)
            })
            .collect();
        self.routes.store(Arc::new(new));
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
    }

    /// Input messages dropped because their subscription's buffer was full: what async-nats
    /// reports as a slow consumer (one event per dropped message), counted the same way for
    /// the ingest connection's subscriptions.
    pub(crate) fn slow_consumer(&self, dropped: u64) {
        self.slow_consumer.fetch_add(dropped, Relaxed);
    }

    pub(crate) fn error(&self, what: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(what);
        }
    }

    pub(crate) fn on_nats_event(&self, event: &async_nats::Event) {
        match event {
            async_nats::Event::Connected => {
                // the client reports its first connection too: reconnects = connects - 1
                self.connects.fetch_add(1, Relaxed);
                self.set_connected(true);
            }
            async_nats::Event::Disconnected => {
                self.disconnects.fetch_add(1, Relaxed);
                self.set_connected(false);
            }
            async_nats::Event::Closed => self.set_connected(false),
            async_nats::Event::SlowConsumer(_) => {
                self.slow_consumer.fetch_add(1, Relaxed);
            }
            other => self.error(format!("nats: {other}")),
        }
    }

    /// Everything as one JSON object (the shape `Plane.stats()` documents).
    pub fn snapshot(&self, pipeline: &Stats) -> Value {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let lanes: Map<String, Value> = [("critical", 0), ("standard", 1), ("bulk", 2)]
            .into_iter()
            .map(|(name, i)| {
                let l = &self.lanes[i];
                (
                    name.to_owned(),
                    json!({
                        "depth": l.depth.load(Relaxed).max(0),
                        "capacity": g(&l.capacity),
                        "shed": g(&l.shed),
                        "processed": g(&l.processed),
                        "batches": g(&l.batches),
                        "latency_bounds_ms": LATENCY_BOUNDS_MS,
                        "latency_counts": l.buckets.iter().map(g).collect::<Vec<_>>(),
                        "latency_sum_ms": g(&l.sum_us) as f64 / 1000.0,
                    }),
                )
            })
            .collect();
        let routes: Map<String, Value> = self
            .routes
            .load()
            .iter()
            .map(|(name, m)| {
                (
                    name.to_string(),
                    json!({
                        "out": g(&m.out),
                        "duplicate": g(&m.duplicate),
                        "stale": g(&m.stale),
                        "dead_letter": g(&m.dead_letter),
                        "failed": g(&m.failed),
                    }),
                )
            })
            .collect();
        let by_status: Map<String, Value> = pipeline
            .by_status
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
            .collect();
        let by_reason: Map<String, Value> = Reason::ALL
            .iter()
            .filter_map(|r| {
                pipeline
                    .by_reason
                    .get(r)
                    .map(|n| (r.as_str().to_owned(), json!(n)))
            })
            .collect();
        json!({
            "events_in": pipeline.events_in,
            "by_status": by_status,
            "by_reason": by_reason,
            "routes": routes,
            "lanes": lanes,
            "nats": {
                "connected": self.connected.load(Relaxed),
                "reconnects": g(&self.connects).saturating_sub(1),
                "disconnects": g(&self.disconnects),
                "slow_consumer": g(&self.slow_consumer),
                "egress": self.egress.snapshot(),
                "ingest": self.ingest.snapshot(),
            },
            "outputs": {
                "published": g(&self.published),
                "acked": g(&self.outputs_acked),
                "failed": g(&self.outputs_failed),
                "naks": g(&self.naks),
                "dead_letters": g(&self.dead_letters),
                "dead_letter_failed": g(&self.dead_letter_failed),
                "relayed": g(&self.relayed),
            },
            "inputs": {
                "received": g(&self.received),
                "acked": g(&self.acked),
                "grpc": g(&self.grpc_events),
            },
            "last_error": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}
