//! The core's work per event, for counting under valgrind: `scripts/event-cost` runs this
//! with callgrind and reports the instructions each event costs, stage by stage. Instruction
//! counts do not depend on what else the machine is doing, so two builds compare exactly on
//! a shared VM where timings move by 10-40% between runs (BENCHMARKS.md).
//!
//! The example's plan (`benches/plan.json`, see the criterion bench for how to regenerate
//! it), events shaped as `millstream bench e2e` sends them (MES telemetry of eight
//! machine/metric pairs, or Odoo stock moves, each event distinct so every one is routed),
//! in batches of 256 on one thread, as the data plane runs its pipeline. The events are
//! built before the first batch, so a count inside `run_batch` leaves them out.
//!
//! `cargo run --release -p millstream-core --example event_cost -- [telemetry|stock_move] [N]`

use millstream_core::{Pipeline, Status};

// The extension runs on mimalloc; count the core the way it ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PLAN: &str = include_str!("../benches/plan.json");
const BATCH: usize = 256;
const NOW_MS: u64 = 1_795_767_400_000;

/// `python/millstream/bench/e2e.py`'s `_MACHINES`.
const MACHINES: [(&str, &str, &str, f64, &str); 8] = [
    ("dus", "press-07", "oil_temp", 181.4, "degF"),
    ("dus", "press-07", "hydraulic_pressure", 212.0, "bar"),
    ("dus", "press-09", "bearing_temp", 331.2, "K"),
    ("dus", "cnc-03", "spindle_speed", 11800.0, "rpm"),
    ("ham", "cnc-12", "spindle_speed", 9400.0, "rpm"),
    ("ham", "cnc-12", "coolant_pressure", 88.5, "psi"),
    ("ham", "mill-02", "motor_temp", 64.8, "degC"),
    ("ham", "mill-02", "feed_pressure", 6.1, "bar"),
];

/// Event `seq` as the e2e generator renders it (`{stamp}` is `<seq>_<send ns>`).
fn telemetry(seq: u64) -> (String, Vec<u8>) {
    let (plant, machine, metric, value, unit) = MACHINES[(seq % 8) as usize];
    let ts = 1_795_767_302_123 + seq;
    let stamp = format!("{seq}_{}", 1_795_767_302_123_000_000 + seq * 40_000);
    let body = format!(
        r#"{{"plant":"{plant}","machine":"{machine}","line":"L{stamp}","metric":"{metric}","value":{value:?},"unit":"{unit}","ts":{ts},"quality":"Good"}}"#
    );
    (
        format!("mes.{plant}.{machine}.telemetry"),
        body.into_bytes(),
    )
}

/// `python/millstream/bench/e2e.py`'s `stock_move_templates`, record `seq`.
fn stock_move(seq: u64) -> (String, Vec<u8>) {
    let stamp = format!("{seq}_{}", 1_795_767_302_123_000_000 + seq * 40_000);
    let body = format!(
        r#"{{"_action":"Millstream: stock moves(#12)","_id":{seq},"_model":"stock.move","company_id":1,"date":"2026-11-27 08:14:57","id":{seq},"location_dest_id":5,"location_id":8,"origin":"S00042","picking_id":311,"product_id":42,"product_uom":2,"product_uom_qty":4.0,"production_id":false,"quantity":4.0,"reference":"M{stamp}","state":"done","write_date":"2026-11-27 08:15:02"}}"#
    );
    ("odoo.stock_move".to_owned(), body.into_bytes())
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
    let make = match kind.as_str() {
        "telemetry" => telemetry,
        "stock_move" => stock_move,
        other => panic!("unknown event kind {other:?} (telemetry or stock_move)"),
    };
    let events: Vec<(String, Vec<u8>)> = (0..n).map(make).collect();
    let mut pipeline = Pipeline::from_json(PLAN).expect("benches/plan.json is a plan");
    let routed: usize = events
        .chunks(BATCH)
        .map(|batch| run_batch(&mut pipeline, batch))
        .sum();
    // A count of events that were not routed would describe another path.
    assert_eq!(routed as u64, n, "every {kind} event is routed");
    println!("{kind}: {n} events routed in batches of {BATCH}");
}
