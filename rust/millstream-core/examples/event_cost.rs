//! The core's work per event, for counting under valgrind: `scripts/event-cost` runs this
//! with callgrind and reports the instructions each event costs, stage by stage. Instruction
//! counts do not depend on what else the machine is doing, so two builds compare exactly on
//! a shared VM where timings move by 10-40% between runs (BENCHMARKS.md).
//!
//! The example's plan (`benches/plan.json`, see the criterion bench for how to regenerate
//! it), and the events `millstream bench e2e` sends (MES telemetry of eight machine/metric
//! pairs, or Odoo stock moves, each event distinct so every one is routed), in batches of 256
//! on one thread, as the data plane runs its pipeline. The events come from the file bench
//! e2e reads, `python/millstream/bench/e2e_events.json`, rendered by the load generator's own
//! template code, so a change to the e2e event mix is counted here without a copy to keep in
//! step. They are rendered before the first batch, so a count inside `run_batch` leaves them
//! out.
//!
//! `cargo run --release -p millstream-core --example event_cost -- [telemetry|stock_move] [N]`

use std::collections::BTreeMap;

use bytes::BytesMut;
use millstream_core::{Pipeline, Status};
use millstream_loadgen::{Template, Values};

// The extension runs on mimalloc; count the core the way it ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PLAN: &str = include_str!("../benches/plan.json");
/// `{"telemetry": [[subject, body], ...], "stock_move": [...]}`, templates as bench e2e hands
/// them to the load generator (e2e.py says what they are).
const EVENTS: &str = include_str!("../../../python/millstream/bench/e2e_events.json");
const BATCH: usize = 256;
const NOW_MS: u64 = 1_795_767_400_000;

/// Event `seq`, rendered as the e2e generator renders it: templates round-robin, `{ts}` a
/// unique epoch-ms timestamp, `{stamp}` `<seq>_<send ns>` (here one event every 40 µs).
fn render(templates: &[(Template, Template)], seq: u64) -> (String, Vec<u8>) {
    let (subject, body) = &templates[(seq % templates.len() as u64) as usize];
    let values = Values {
        seq,
        ts: 1_795_767_302_123 + seq,
        t_ns: 1_795_767_302_123_000_000 + seq * 40_000,
    };
    let mut num = itoa::Buffer::new();
    let mut s = BytesMut::with_capacity(subject.max_len());
    subject.render(&mut s, &mut num, values);
    let mut b = BytesMut::with_capacity(body.max_len());
    body.render(&mut b, &mut num, values);
    let subject = String::from_utf8(s.to_vec()).expect("e2e_events.json's subjects are UTF-8");
    (subject, b.to_vec())
}

/// One batch through the pipeline, its outcomes dropped as the data plane drops them once
/// published: what `scripts/event-cost` counts (kept out of line so it can find it).
#[inline(never)]
fn run_batch(pipeline: &mut Pipeline, batch: &[(String, Vec<u8>)]) -> usize {
    let out = pipeline.process_batch(
        batch.iter().map(|(s, b)| (s.as_str(), b.as_slice())),
        NOW_MS,
    );
    out.iter().filter(|o| o.status == Status::Routed).count()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "telemetry".into());
    let n: u64 = args
        .next()
        .map_or(20_000, |a| a.parse().expect("N is a count"));
    let mut kinds: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(EVENTS).expect("e2e_events.json maps kinds to (subject, body) pairs");
    let known: Vec<String> = kinds.keys().cloned().collect();
    let Some(pairs) = kinds.remove(&kind) else {
        panic!("unknown event kind {kind:?} (one of {known:?})");
    };
    let templates: Vec<(Template, Template)> = pairs
        .iter()
        .map(|(s, b)| (Template::parse(s), Template::parse(b)))
        .collect();
    assert!(!templates.is_empty(), "no {kind} events in e2e_events.json");
    let events: Vec<(String, Vec<u8>)> = (0..n).map(|seq| render(&templates, seq)).collect();
    let mut pipeline = Pipeline::from_json(PLAN).expect("benches/plan.json is a plan");
    let routed: usize = events
        .chunks(BATCH)
        .map(|batch| run_batch(&mut pipeline, batch))
        .sum();
    // A count of events that were not routed would describe another path.
    assert_eq!(routed as u64, n, "every {kind} event is routed");
    println!("{kind}: {n} events routed in batches of {BATCH}");
}
