//! State across restarts (decision 6): each route's committed dedup keys and stale-guard
//! versions are saved to a JetStream object store every few seconds and at drain, and
//! loaded before the first event is taken. The object store chunks large snapshots, so a
//! route with a million keys (24 MB) needs no special handling.
//!
//! What a restart can let through is what was committed after the last snapshot (at most
//! `snapshot_every`); on at-least-once routes the output's `Nats-Msg-Id` closes that gap,
//! since JetStream drops a republish with the same id within the stream's duplicate window.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore};
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::AsyncReadExt;

use super::{PlaneError, Shared};
use crate::dedup::KeyHash;
use crate::pipeline::{Pipeline, RouteState};

const MAGIC: &[u8; 4] = b"MSS1";

#[derive(Clone)]
pub(crate) struct StateStore {
    store: ObjectStore,
    bucket: String,
    prefix: String,
}

impl StateStore {
    pub(crate) async fn open(
        js: &jetstream::Context,
        bucket: &str,
        config_name: &str,
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
        })
    }

    fn object(&self, route: &str) -> String {
        format!("{}/{}", self.prefix, route)
    }

    fn err(&self, detail: String) -> PlaneError {
        PlaneError::State {
            bucket: self.bucket.clone(),
            detail,
        }
    }

    /// Load every route's snapshot that still matches its definition.
    pub(crate) async fn restore(&self, pipeline: &mut Pipeline) -> Result<usize, PlaneError> {
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let mut loaded = 0;
        for route in pipeline.export_state() {
            let name = self.object(&route.route);
            let mut object = match self.store.get(&name).await {
                Ok(o) => o,
                Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(format!("get {name}: {e}"))),
            };
            let mut buf = Vec::new();
            object
                .read_to_end(&mut buf)
                .await
                .map_err(|e| self.err(format!("read {name}: {e}")))?;
            let state = decode(&buf).map_err(|e| self.err(format!("{name}: {e}")))?;
            if let Some((d, s)) = pipeline.import_state(&state, now_ms) {
                loaded += d + s;
            }
        }
        Ok(loaded)
    }

    /// Write a snapshot of every route with state; returns the number of keys written.
    pub(crate) async fn save(&self, shared: &Shared) -> Result<usize, PlaneError> {
        let states = shared.pipeline().export_state();
        let mut keys = 0;
        for state in states {
            keys += state.dedup.len() + state.stale.len();
            let bytes = encode(&state);
            let name = self.object(&state.route);
            self.store
                .put(name.as_str(), &mut bytes.as_ref())
                .await
                .map_err(|e| self.err(format!("put {name}: {e}")))?;
        }
        Ok(keys)
    }
}

/// The periodic snapshot task.
pub(crate) async fn every(store: StateStore, shared: Arc<Shared>, every_ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = store.save(&shared).await {
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
