//! Lanes (decision 5): one bounded queue per business criticality. The worker always takes
//! from critical first, then standard, then bulk, a whole batch at a time; under overload
//! the bulk queue fills first and, where every route is best effort, sheds (counted).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::publish::Reply;
use super::{egress, LanesSpec, Shared};
use crate::pipeline::Outcome;
use crate::plan::Lane;

/// One event between ingest and egress.
pub(crate) struct Inbound {
    pub subject: async_nats::Subject,
    pub payload: Bytes,
    /// JetStream inputs only: the delivery's reply subject, where the ack (or nak) goes once
    /// every output of the event is acknowledged.
    pub ack_to: Option<async_nats::Subject>,
    pub delivered: i64,
    pub retry: Option<Arc<Retry>>,
    pub lane: Lane,
    pub received: Instant,
    /// gRPC publishes only: where the event's verdict goes (boxed: a verdict is a few
    /// hundred bytes that every NATS event would otherwise carry through the lanes).
    pub reply: Option<Box<Reply>>,
}

/// How a JetStream input is retried when an output fails.
pub(crate) struct Retry {
    pub max_deliver: i64,
    pub backoff_ms: Vec<u64>,
}

#[derive(Clone)]
pub(crate) struct LaneSenders {
    txs: [mpsc::Sender<Inbound>; 3],
    metrics: Arc<Metrics>,
}

pub(crate) struct LaneReceivers {
    rxs: [mpsc::Receiver<Inbound>; 3],
    batch: [usize; 3],
    open: [bool; 3],
}

/// Index by priority: 0 critical, 1 standard, 2 bulk.
pub(crate) fn ix(lane: Lane) -> usize {
    match lane {
        Lane::Critical => 0,
        Lane::Standard => 1,
        Lane::Bulk => 2,
    }
}

const LANES: [Lane; 3] = [Lane::Critical, Lane::Standard, Lane::Bulk];

pub(crate) fn channels(spec: &LanesSpec, metrics: Arc<Metrics>) -> (LaneSenders, LaneReceivers) {
    let mk = |lane| mpsc::channel::<Inbound>(spec.get(lane).queue);
    let (c, s, b) = (mk(Lane::Critical), mk(Lane::Standard), mk(Lane::Bulk));
    for lane in LANES {
        metrics.lanes[ix(lane)].set_capacity(spec.get(lane).queue);
    }
    (
        LaneSenders {
            txs: [c.0, s.0, b.0],
            metrics,
        },
        LaneReceivers {
            rxs: [c.1, s.1, b.1],
            batch: LANES.map(|l| spec.get(l).batch),
            open: [true; 3],
        },
    )
}

impl LaneSenders {
    /// Queue an event. A JetStream input (or any event a reliable route needs) waits for
    /// room, which stops the pull and holds the backlog in the stream; a best-effort event
    /// finding its lane full is shed and counted. Returns false once the plane is stopping.
    pub async fn send(&self, msg: Inbound, may_shed: bool) -> bool {
        let i = ix(msg.lane);
        match self.try_send(msg, may_shed) {
            Ok(open) => open,
            Err(msg) => {
                if self.txs[i].send(msg).await.is_err() {
                    return false;
                }
                self.metrics.lanes[i].queued();
                true
            }
        }
    }

    /// `send` without waiting: `Ok(true)` when queued (or shed), `Ok(false)` once the plane
    /// is stopping, and the event back when its lane is full and it may not be shed.
    // The event comes back whole, by value: boxing it for the rare full lane would cost an
    // allocation for every event.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, msg: Inbound, may_shed: bool) -> Result<bool, Inbound> {
        let i = ix(msg.lane);
        let lane = &self.metrics.lanes[i];
        match self.txs[i].try_send(msg) {
            Ok(()) => {
                lane.queued();
                Ok(true)
            }
            Err(mpsc::error::TrySendError::Full(_)) if may_shed => {
                lane.shed();
                Ok(true)
            }
            Err(mpsc::error::TrySendError::Full(msg)) => Err(msg),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(false),
        }
    }
}

impl LaneReceivers {
    /// The next batch, from the most critical lane that has events. None when every lane
    /// is closed and empty (drain).
    async fn recv(&mut self, buf: &mut Vec<Inbound>) -> Option<Lane> {
        loop {
            if !self.open.iter().any(|&o| o) {
                return None;
            }
            let [c, s, b] = &mut self.rxs;
            let (lane, first) = tokio::select! {
                biased;
                m = c.recv(), if self.open[0] => (Lane::Critical, m),
                m = s.recv(), if self.open[1] => (Lane::Standard, m),
                m = b.recv(), if self.open[2] => (Lane::Bulk, m),
            };
            let i = ix(lane);
            let Some(first) = first else {
                self.open[i] = false;
                continue;
            };
            buf.push(first);
            // the rest of the batch: whatever this lane already holds, without waiting
            while buf.len() < self.batch[i] {
                match self.rxs[i].try_recv() {
                    Ok(m) => buf.push(m),
                    Err(_) => break,
                }
            }
            return Some(lane);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Batches between the pipeline and egress: enough to keep egress busy while the pipeline
/// works on the next one, few enough that memory stays bounded.
const EGRESS_QUEUE: usize = 8;

/// The one task that runs the pipeline: batches in priority order, dedup and stale
/// decisions in arrival order within a lane. Egress (headers, publishes, acks) runs in its own
/// task, so on two cores the pipeline and egress overlap instead of taking turns; it keeps
/// the order of the batches it is given.
pub(crate) async fn worker(shared: Arc<Shared>, mut lanes: LaneReceivers) {
    // Inputs and their outcomes travel as two vectors, not one of pairs: zipping them into
    // pairs copied every event's few hundred bytes once more (5% of the router in a profile).
    let (tx, mut rx) = mpsc::channel::<(Vec<Inbound>, Option<Vec<Outcome>>)>(EGRESS_QUEUE);
    let egress_shared = shared.clone();
    let egress_task = tokio::spawn(async move {
        let mut headers = egress::HeaderCache::default();
        let mut generation = egress_shared.routing().generation;
        while let Some(batch) = rx.recv().await {
            // header templates are keyed by route position, which a reload may change
            let now = egress_shared.routing().generation;
            if now != generation {
                headers = egress::HeaderCache::default();
                generation = now;
            }
            let mut waiting = Vec::new();
            match batch {
                // outcomes are borrowed, never moved: see `egress::dispatch_now`
                (msgs, Some(outcomes)) => {
                    for (mut msg, out) in msgs.into_iter().zip(&outcomes) {
                        if egress::dispatch_now(&egress_shared, &mut headers, &mut msg, out) {
                            continue;
                        }
                        if let Some(w) =
                            egress::dispatch(&egress_shared, &mut headers, msg, out).await
                        {
                            waiting.push(w);
                        }
                    }
                }
                (msgs, None) => {
                    for mut msg in msgs {
                        if !egress::relay_now(&egress_shared, &mut msg) {
                            egress::relay(&egress_shared, msg).await;
                        }
                    }
                }
            }
            if let Some(w) = &egress_shared.wire {
                w.send_queued();
            }
            if !waiting.is_empty() {
                let s = egress_shared.clone();
                egress_shared.settling.fetch_add(1, Ordering::AcqRel);
                egress_shared.inflight.spawn(async move {
                    egress::settle_batch(s.clone(), waiting).await;
                    s.settling.fetch_sub(1, Ordering::AcqRel);
                });
            }
            egress_shared.egress_queued.fetch_sub(1, Ordering::AcqRel);
        }
    });
    let mut buf: Vec<Inbound> = Vec::new();
    while let Some(lane) = lanes.recv(&mut buf).await {
        // A reload waits for this between two batches.
        let turn = shared.turn.lock().await;
        let m = &shared.metrics.lanes[ix(lane)];
        m.taken(buf.len());
        let outcomes = (!shared.passthrough).then(|| {
            let mut p = shared.pipeline();
            p.process_batch(
                buf.iter().map(|m| (m.subject.as_str(), m.payload.as_ref())),
                now_ms(),
            )
        });
        let next = Vec::with_capacity(buf.len().max(16));
        let batch = (std::mem::replace(&mut buf, next), outcomes);
        shared.egress_queued.fetch_add(1, Ordering::AcqRel);
        if tx.send(batch).await.is_err() {
            break;
        }
        drop(turn);
    }
    // drain: egress finishes what it was given before the worker counts as done
    drop(tx);
    let _ = egress_task.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plane::LaneSpec;

    fn spec(queue: usize) -> LanesSpec {
        let l = || LaneSpec {
            queue,
            batch: 4,
            objective_ms: 10,
        };
        LanesSpec {
            critical: l(),
            standard: l(),
            bulk: l(),
        }
    }

    fn event(lane: Lane, n: usize) -> Inbound {
        Inbound {
            subject: format!("s.{n}").into(),
            payload: Bytes::new(),
            ack_to: None,
            delivered: 1,
            retry: None,
            lane,
            received: Instant::now(),
            reply: None,
        }
    }

    #[tokio::test]
    async fn critical_is_served_first_and_a_batch_never_mixes_lanes() {
        let metrics = Arc::new(Metrics::default());
        let (tx, mut rx) = channels(&spec(100), metrics);
        for i in 0..6 {
            assert!(tx.send(event(Lane::Bulk, i), true).await);
        }
        assert!(tx.send(event(Lane::Standard, 6), false).await);
        assert!(tx.send(event(Lane::Critical, 7), false).await);
        let mut buf = Vec::new();
        assert_eq!(rx.recv(&mut buf).await, Some(Lane::Critical));
        assert_eq!(buf.len(), 1);
        buf.clear();
        assert_eq!(rx.recv(&mut buf).await, Some(Lane::Standard));
        buf.clear();
        assert_eq!(rx.recv(&mut buf).await, Some(Lane::Bulk));
        assert_eq!(buf.len(), 4, "one batch is at most the lane's batch size");
        buf.clear();
        drop(tx);
        assert_eq!(rx.recv(&mut buf).await, Some(Lane::Bulk));
        assert_eq!(buf.len(), 2);
        buf.clear();
        assert_eq!(rx.recv(&mut buf).await, None, "closed and empty: drained");
    }

    #[tokio::test]
    async fn a_full_lane_sheds_best_effort_events_and_counts_them() {
        let metrics = Arc::new(Metrics::default());
        let (tx, _rx) = channels(&spec(3), metrics.clone());
        for i in 0..10 {
            assert!(tx.send(event(Lane::Bulk, i), true).await);
        }
        let bulk = &metrics.lanes[ix(Lane::Bulk)];
        assert_eq!(bulk.shed.load(std::sync::atomic::Ordering::Relaxed), 7);
        assert_eq!(bulk.depth.load(std::sync::atomic::Ordering::Relaxed), 3);
    }
}
