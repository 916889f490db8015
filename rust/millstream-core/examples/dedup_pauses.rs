//! How long one dedup decision can take while the cache fills and once it is full: the
//! telemetry route's two-million-key cache (window 2 min) fed 50,000 new keys a second (in
//! event time) until it has turned over three times. Prints, for the filling and for the
//! full cache, the mean time of an `admit`, the longest one, and how many took over a
//! millisecond (a pause the whole batch waits for; while filling, the table's growths).
//!
//! `cargo run --release -p millstream-core --example dedup_pauses`

use std::time::{Duration, Instant};

use millstream_core::dedup::{DedupCache, KeyHash};

fn main() {
    const CAPACITY: usize = 2_000_000;
    const KEYS: u64 = 4 * CAPACITY as u64;
    let mut cache = DedupCache::new(120_000, CAPACITY);
    // hashed up front, so the timings are the cache's alone
    let keys: Vec<KeyHash> = (0..KEYS).map(|i| KeyHash::of(&format!("k{i}"))).collect();
    let t0 = 1_700_000_000_000u64;
    // [while filling, at capacity]: total, longest (and at which key), over 1 ms, timed
    let mut phases = [(Duration::ZERO, (Duration::ZERO, 0usize), 0u32, 0u32); 2];
    for (i, &key) in keys.iter().enumerate() {
        let now = t0 + i as u64 / 50;
        let start = Instant::now();
        let admitted = cache.admit(key, now, false);
        let took = start.elapsed();
        assert!(admitted, "every key is new");
        let p = &mut phases[usize::from(i >= CAPACITY)];
        p.0 += took;
        p.3 += 1;
        if took > p.1 .0 {
            p.1 = (took, i);
        }
        if took > Duration::from_millis(1) {
            p.2 += 1;
        }
    }
    for ((total, (longest, at), over_1ms, timed), phase) in
        phases.into_iter().zip(["while filling", "at capacity"])
    {
        println!(
            "{phase} ({timed} admits): mean {:.0} ns, longest {:.1} us (key {at}), \
             {over_1ms} over 1 ms",
            total.as_nanos() as f64 / f64::from(timed),
            longest.as_nanos() as f64 / 1e3,
        );
    }
    println!(
        "{:.1} bytes per key at capacity ({CAPACITY} keys)",
        cache.memory_bytes() as f64 / cache.len() as f64
    );
}
