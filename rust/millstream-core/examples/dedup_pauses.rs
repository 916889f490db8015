//! How long one dedup decision can take once the cache is full: the telemetry route's
//! two-million-key cache (window 2 min) fed 50,000 new keys a second (in event time) until
//! it has turned over three times. Prints the mean time of an `admit` at capacity, the
//! longest one, and how many took over a millisecond (a pause the whole batch waits for).
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
    let (mut total, mut longest, mut over_1ms, mut timed) = (Duration::ZERO, Duration::ZERO, 0, 0);
    for (i, &key) in keys.iter().enumerate() {
        let now = t0 + i as u64 / 50;
        let start = Instant::now();
        let admitted = cache.admit(key, now, false);
        let took = start.elapsed();
        assert!(admitted, "every key is new");
        if i >= CAPACITY {
            total += took;
            timed += 1;
            longest = longest.max(took);
            if took > Duration::from_millis(1) {
                over_1ms += 1;
            }
        }
    }
    println!(
        "at capacity ({CAPACITY} keys, {timed} admits): mean {:.0} ns, longest {:.1} us, \
         {over_1ms} over 1 ms; {:.1} bytes per key",
        total.as_nanos() as f64 / f64::from(timed),
        longest.as_nanos() as f64 / 1e3,
        cache.memory_bytes() as f64 / cache.len() as f64,
    );
}
