//! State across restarts (decision 6): each route's committed dedup keys and stale-guard
//! versions are saved to a JetStream object store every few seconds and at drain, and
//! loaded before the first event is taken. The object store chunks large snapshots, so a
//! route with a million keys (24 MB) needs no special handling.
//!
//! Most saves write only what changed since the previous one (a delta object per route);
//! every `MAX_DELTAS` saves, or when changes outgrow the route's capacity, a full snapshot
//! replaces the base and the deltas are deleted. Restore reads the base, then the deltas in
//! order.
//!
//! What a restart can let through is what was committed after the last snapshot (at most
//! `snapshot_every`); on at-least-once routes the output's `Nats-Msg-Id` closes that gap,
//! since JetStream drops a republish with the same id within the stream's duplicate window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore};
use async_speed_limit::Limiter;
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::AsyncReadExt;

use super::{PlaneError, Shared};
use crate::dedup::KeyHash;
use crate::pipeline::{Pipeline, RouteState};

const MAGIC: &[u8; 4] = b"MSS1";
/// Deltas written before the next save is a full snapshot (a minute at the default 5 s).
const MAX_DELTAS: usize = 12;
/// Dedup table slots read per hold of the pipeline when a route is saved whole (1.3 MB of
/// table). Read in one hold, the time grows with the keys, and a full telemetry route holds
/// two million (BENCHMARKS.md, session 6).
const EXPORT_PART_SLOTS: usize = 1 << 16;
/// Whether a save is sent at the store's `paced` rate (the periodic ones) or at once (one
/// the caller asks for, and the drain's last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    Paced,
    AtOnce,
}

#[derive(Clone)]
pub(crate) struct StateStore {
    store: ObjectStore,
    bucket: String,
    prefix: String,
    /// Bytes a second periodic saves reach the object store at (`state.snapshot_bytes_per_s`;
    /// None: unpaced). Sent at once, a delta (12 MB at 100k keys a second) or a full
    /// two-million-key route (48 MB) went to nats-server in one burst, which stores it
    /// while events wait; paced, the same work is spread over the interval.
    paced: Option<f64>,
    /// Per route, how many delta objects follow its base. Behind an async lock, which also
    /// keeps the periodic save and the drain's final save from interleaving.
    deltas: Arc<tokio::sync::Mutex<HashMap<String, usize>>>,
}

impl StateStore {
    pub(crate) async fn open(
        js: &jetstream::Context,
        bucket: &str,
        config_name: &str,
        paced_bytes_per_s: u64,
    ) -> Result<StateStore, PlaneError> {
        let store = js
            .get_object_store(bucket)
            .await
            .map_err(|e| PlaneError::State {
                bucket: bucket.to_owned(),
                detail: format!("{e} (the control plane provisions it at start)"),
            })?;
        Ok(StateStore {
            store,
            bucket: bucket.to_owned(),
            prefix: config_name.to_owned(),
            paced: (paced_bytes_per_s > 0).then_some(paced_bytes_per_s as f64),
            deltas: Arc::default(),
        })
    }

    fn object(&self, route: &str) -> String {
        format!("{}/{}", self.prefix, route)
    }

    fn delta(&self, route: &str, n: usize) -> String {
        format!("{}/{}/{}", self.prefix, route, n)
    }

    /// The object's bytes, or None if there is no such object.
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, PlaneError> {
        let mut object = match self.store.get(name).await {
            Ok(o) => o,
            Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(self.err(format!("get {name}: {e}"))),
        };
        let mut buf = Vec::new();
        object
            .read_to_end(&mut buf)
            .await
            .map_err(|e| self.err(format!("read {name}: {e}")))?;
        Ok(Some(buf))
    }

    async fn write(&self, name: &str, state: &RouteState, pace: Pace) -> Result<(), PlaneError> {
        let bytes = encode(state);
        let put = match (pace, self.paced) {
            (Pace::Paced, Some(rate)) => {
                let mut paced = <Limiter>::new(rate).limit(bytes.as_ref());
                self.store.put(name, &mut paced).await
            }
            _ => self.store.put(name, &mut bytes.as_ref()).await,
        };
        put.map_err(|e| self.err(format!("put {name}: {e}")))?;
        Ok(())
    }

    fn err(&self, detail: String) -> PlaneError {
        PlaneError::State {
            bucket: self.bucket.clone(),
            detail,
        }
    }

    /// Load every route's base snapshot and its deltas (where they still match the route's
    /// definition), then start recording changes for the next save.
    pub(crate) async fn restore(&self, pipeline: &mut Pipeline) -> Result<usize, PlaneError> {
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let mut loaded = 0;
        for route in pipeline.export_state() {
            let mut names = vec![self.object(&route.route)];
            let mut parts = Vec::new();
            let mut n = 0;
            while let Some(name) = names.pop() {
                let Some(buf) = self.read(&name).await? else {
                    break;
                };
                parts.push(decode(&buf).map_err(|e| self.err(format!("{name}: {e}")))?);
                n += 1;
                names.push(self.delta(&route.route, n));
            }
            for state in &parts {
                if let Some((d, s)) = pipeline.import_state(state, now_ms) {
                    loaded += d + s;
                }
            }
            if n > 0 {
                // the first save (a full one) deletes the deltas found here
                self.deltas.lock().await.insert(route.route.clone(), n - 1);
            }
        }
        // numbering restarts, so the next save is a full one (track_changes asks for it)
        pipeline.track_changes();
        Ok(loaded)
    }

    /// Write what changed since the last save (or a full snapshot where one is due);
    /// returns the number of keys written.
    pub(crate) async fn save(&self, shared: &Shared, pace: Pace) -> Result<usize, PlaneError> {
        let mut deltas = self.deltas.lock().await;
        let mut changes = shared.pipeline().changed_state().into_iter();
        let mut keys = 0;
        while let Some((state, full)) = changes.next() {
            let route = state.route.clone();
            match self
                .save_route(shared, state, full, pace, &mut deltas)
                .await
            {
                Ok(n) => keys += n,
                Err(e) => {
                    // The changes of this route and of those after it were taken from the
                    // pipeline and not written: a delta cannot bring them back. Their next
                    // save is whole (their keys are still in the tables), with every delta
                    // numbered so far deleted after it.
                    for route in std::iter::once(route).chain(changes.map(|(s, _)| s.route)) {
                        let count = deltas.entry(route).or_insert(0);
                        *count = (*count).max(MAX_DELTAS);
                    }
                    return Err(e);
                }
            }
        }
        Ok(keys)
    }

    /// Writes one route's changes as a delta, or the route whole where that is due.
    async fn save_route(
        &self,
        shared: &Shared,
        state: RouteState,
        full: bool,
        pace: Pace,
        deltas: &mut HashMap<String, usize>,
    ) -> Result<usize, PlaneError> {
        let count = deltas.get(&state.route).copied();
        let compact = !full && count.is_some_and(|c| c >= MAX_DELTAS);
        if full || compact || count.is_none() {
            // the whole route (when due for compaction, its changes are in it too)
            let Some(state) = export_whole(shared, &state.route).await else {
                return Ok(0);
            };
            self.write(&self.object(&state.route), &state, pace).await?;
            for n in 1..=count.unwrap_or(0) {
                // best effort: a leftover delta only re-adds keys the base has
                let _ = self.store.delete(self.delta(&state.route, n)).await;
            }
            let keys = state.dedup.len() + state.stale.len();
            deltas.insert(state.route, 0);
            Ok(keys)
        } else if !state.dedup.is_empty() || !state.stale.is_empty() {
            let n = count.unwrap_or(0) + 1;
            self.write(&self.delta(&state.route, n), &state, pace)
                .await?;
            let keys = state.dedup.len() + state.stale.len();
            deltas.insert(state.route, n);
            Ok(keys)
        } else {
            Ok(0)
        }
    }
}

/// One route's whole state, read a part at a time with the pipeline let go in between.
/// None if the route is gone, or a reload replaced the pipeline meanwhile (the reload asks
/// for a whole save next time).
async fn export_whole(shared: &Shared, route: &str) -> Option<RouteState> {
    let generation = shared.routing().generation;
    let mut export = shared.pipeline().start_export(route)?;
    loop {
        {
            let mut pipeline = shared.pipeline();
            // a reload swaps the pipeline and bumps the generation under this lock
            if shared.routing().generation != generation {
                return None;
            }
            if pipeline.export_part(&mut export, EXPORT_PART_SLOTS) {
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    Some(export.into_state())
}

/// The periodic snapshot task.
pub(crate) async fn every(store: StateStore, shared: Arc<Shared>, every_ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = store.save(&shared, Pace::Paced).await {
            shared.metrics.error(e.to_string());
        }
    }
}

// Fixed-width records behind a small header: the layout is four integers and a hash, which
// a serialisation framework would only wrap.
fn encode(s: &RouteState) -> BytesMut {
    let mut b =
        BytesMut::with_capacity(32 + s.route.len() + s.dedup.len() * 24 + s.stale.len() * 32);
    b.put_slice(MAGIC);
    b.put_u64_le(s.fingerprint);
    b.put_u32_le(s.route.len() as u32);
    b.put_slice(s.route.as_bytes());
    b.put_u64_le(s.dedup.len() as u64);
    for (k, seen) in &s.dedup {
        b.put_slice(&k.0);
        b.put_u64_le(*seen);
    }
    b.put_u64_le(s.stale.len() as u64);
    for (k, version, touched) in &s.stale {
        b.put_slice(&k.0);
        b.put_i64_le(*version);
        b.put_u64_le(*touched);
    }
    b
}

fn decode(mut b: &[u8]) -> Result<RouteState, String> {
    let short = || "truncated snapshot".to_owned();
    if b.len() < 16 || &b[..4] != MAGIC {
        return Err("not a Millstream state snapshot".into());
    }
    b.advance(4);
    let fingerprint = b.get_u64_le();
    let n = b.get_u32_le() as usize;
    if b.remaining() < n {
        return Err(short());
    }
    let route = String::from_utf8(b[..n].to_vec()).map_err(|e| e.to_string())?;
    b.advance(n);
    let key = |b: &mut &[u8]| {
        let mut k = [0u8; 16];
        b.copy_to_slice(&mut k);
        KeyHash(k)
    };
    if b.remaining() < 8 {
        return Err(short());
    }
    let n = usize::try_from(b.get_u64_le()).map_err(|e| e.to_string())?;
    if b.remaining() < n.saturating_mul(24) {
        return Err(short());
    }
    let mut dedup = Vec::with_capacity(n);
    for _ in 0..n {
        let k = key(&mut b);
        dedup.push((k, b.get_u64_le()));
    }
    if b.remaining() < 8 {
        return Err(short());
    }
    let n = usize::try_from(b.get_u64_le()).map_err(|e| e.to_string())?;
    if b.remaining() < n.saturating_mul(32) {
        return Err(short());
    }
    let mut stale = Vec::with_capacity(n);
    for _ in 0..n {
        let k = key(&mut b);
        let v = b.get_i64_le();
        stale.push((k, v, b.get_u64_le()));
    }
    Ok(RouteState {
        route,
        fingerprint,
        dedup,
        stale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_garbage_is_refused() {
        let s = RouteState {
            route: "inventory-movements".into(),
            fingerprint: 42,
            dedup: vec![(KeyHash::of("a"), 1_000), (KeyHash::of("b"), 2_000)],
            stale: vec![(KeyHash::of("m7"), -5, 3_000)],
        };
        let bytes = encode(&s);
        assert_eq!(decode(&bytes), Ok(s));
        assert!(decode(b"nope").is_err());
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
