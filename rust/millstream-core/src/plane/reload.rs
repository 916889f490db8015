//! Config reload (issue 5, `Admin.ReloadConfig`): the new plan takes over between two
//! batches. The worker is held at its turn, egress finishes what it was given and every
//! PubAck in flight settles (so no dedup key is confirmed against the wrong route position),
//! then state and counters carry over by route name and the route table is swapped. Events
//! wait in their lanes meanwhile: nothing is lost, and since dedup state carries over,
//! nothing is routed twice.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{PlaneError, Routing, Shared};
use crate::pipeline::Pipeline;

pub(crate) async fn swap(
    shared: Arc<Shared>,
    mut pipeline: Pipeline,
    timeout: Duration,
) -> Result<String, PlaneError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let Ok(turn) = tokio::time::timeout_at(deadline, shared.turn.lock()).await else {
        return Err(PlaneError::Runtime(
            "reload: the pipeline did not finish its batch in time; the old config keeps running"
                .into(),
        ));
    };
    while shared.egress_queued.load(Ordering::Acquire) > 0
        || shared.settling.load(Ordering::Acquire) > 0
    {
        if tokio::time::Instant::now() >= deadline {
            return Err(PlaneError::Runtime(
                "reload: outputs in flight did not settle in time (is the output stream \
                 reachable?); the old config keeps running"
                    .into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let previous = {
        let mut old = shared.pipeline();
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        pipeline.adopt(&old, now_ms);
        if shared.tracks_state {
            // the next snapshot saves each route whole, under its (possibly new) definition
            pipeline.track_changes();
        }
        let generation = shared.routing().generation + 1;
        shared.metrics.set_routes(pipeline.route_names());
        shared
            .routing
            .store(Arc::new(Routing::of(&pipeline, generation)));
        let previous = std::mem::replace(&mut *old, pipeline);
        previous.version
    };
    drop(turn);
    Ok(previous)
}
