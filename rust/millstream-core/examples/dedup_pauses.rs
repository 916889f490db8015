//! How long one dedup decision can take while the cache fills and once it is full: the
//! telemetry route's two-million-key cache (window 2 min) fed 50,000 new keys a second (in
//! event time) until it has turned over three times. Prints, for the filling and for the
//! full cache, the mean time of an `admit`, the longest one, and how many took over a
//! millisecond (a pause the whole batch waits for; while filling, the table's growths).
//!
//! `cargo run --release -p millstream-core --example dedup_pauses`

use std::time::Instant;

mod common {
    pub mod pauses;
}
use common::pauses::Pauses;

use millstream_core::dedup::{DedupCache, KeyHash};

fn main() {
    const CAPACITY: usize = 2_000_000;
    const KEYS: u64 = 4 * CAPACITY as u64;
    let mut cache = DedupCache::new(120_000, CAPACITY);
    // hashed up front, so the timings are the cache's alone
    let keys: Vec<KeyHash> = (0..KEYS).map(|i| KeyHash::of(&format!("k{i}"))).collect();
    let t0 = 1_700_000_000_000u64;
    let mut pauses = Pauses::new(CAPACITY);
    for (i, &key) in keys.iter().enumerate() {
        let now = t0 + i as u64 / 50;
        let start = Instant::now();
        let admitted = cache.admit(key, now, false);
        let took = start.elapsed();
        assert!(admitted, "every key is new");
        pauses.record(i, took);
    }
    pauses.print("admits");
    println!(
        "{:.1} bytes per key at capacity ({CAPACITY} keys)",
        cache.memory_bytes() as f64 / cache.len() as f64
    );
}
