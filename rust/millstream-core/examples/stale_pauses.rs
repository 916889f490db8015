//! How long one stale-guard update can take while the guard fills and once it is full: a
//! one-million-entity guard (the Odoo routes' capacity in the example config) fed until it
//! has turned over twice, two ways: new entities only, then (a fresh guard) each entity
//! written three times, as an Odoo record moving through its states is, the later writes
//! 1,000 and 2,000 entities behind the first (so the guard's queue of touches holds
//! superseded ones). Prints, per feed, for the fill and for the full guard, the mean time of
//! an `observe`, the longest one (and at which entity), and how many took over a millisecond
//! (a pause the whole batch waits for).
//!
//! `cargo run --release -p millstream-core --example stale_pauses`

use std::time::Instant;

mod common {
    pub mod pauses;
}
use common::pauses::Pauses;

use millstream_core::dedup::KeyHash;
use millstream_core::stale::StaleGuard;

const CAPACITY: usize = 1_000_000;
const ENTITIES: usize = 3 * CAPACITY;

fn main() {
    // hashed up front, so the timings are the guard's alone
    let keys: Vec<KeyHash> = (0..ENTITIES)
        .map(|i| KeyHash::of(&format!("m{i}")))
        .collect();
    let t0 = 1_700_000_000_000u64;
    for (feed, writes) in [
        ("new entities only", &[0][..]),
        ("three writes each", &[0, 1_000, 2_000]),
    ] {
        let mut guard = StaleGuard::new(CAPACITY);
        let mut pauses = Pauses::new(CAPACITY);
        let mut event = 0u64;
        for e in 0..ENTITIES {
            for &behind in writes {
                let Some(at) = e.checked_sub(behind) else {
                    continue;
                };
                let now = t0 + event / 20;
                event += 1;
                let start = Instant::now();
                guard.observe(keys[at], event as i64, now);
                pauses.record(e, start.elapsed());
            }
        }
        println!("{feed}:");
        pauses.print("updates");
        println!(
            "{:.1} bytes per entity at capacity ({} entities)",
            guard.memory_bytes() as f64 / guard.len() as f64,
            guard.len()
        );
    }
}
