//! How long one stale-guard update can take while the guard fills and once it is full: a
//! one-million-entity guard (the Odoo routes' capacity in the example config) fed new entity
//! keys until it has turned over twice. Prints, for the fill and for the full guard, the mean
//! time of an `observe`, the longest one (and at which key), and how many took over a
//! millisecond (a pause the whole batch waits for: the table's growths while it fills, the
//! passes that drop the least recently touched tenth once it is full).
//!
//! `cargo run --release -p millstream-core --example stale_pauses`

use std::time::Instant;

mod common {
    pub mod pauses;
}
use common::pauses::Pauses;

use millstream_core::dedup::KeyHash;
use millstream_core::stale::StaleGuard;

fn main() {
    const CAPACITY: usize = 1_000_000;
    const KEYS: u64 = 3 * CAPACITY as u64;
    let mut guard = StaleGuard::new(CAPACITY);
    // hashed up front, so the timings are the guard's alone
    let keys: Vec<KeyHash> = (0..KEYS).map(|i| KeyHash::of(&format!("m{i}"))).collect();
    let t0 = 1_700_000_000_000u64;
    let mut pauses = Pauses::new(CAPACITY);
    for (i, &key) in keys.iter().enumerate() {
        let now = t0 + i as u64 / 20;
        let start = Instant::now();
        guard.observe(key, i as i64, now);
        let took = start.elapsed();
        pauses.record(i, took);
    }
    pauses.print("updates");
    println!(
        "{:.1} bytes per entity at capacity ({} entities)",
        guard.memory_bytes() as f64 / guard.len() as f64,
        guard.len()
    );
}
