//! Criterion benches of the core, stage by stage and end to end, on events shaped like
//! `examples/events/`. Every bench is one event per iteration (`Throughput::Elements(1)`), so
//! criterion's "elem/s" is events per second and the time is the cost of one event.
//!
//! The compiled plan is the fixture `benches/plan.json`, the output of
//! `compile_plan(load_config("examples/manufacturing.yaml"))`. Regenerate it whenever the
//! example config or `compile_plan` changes (from the repository root, in the project venv):
//!
//! ```text
//! python -c 'import json; from millstream.config import load_config, compile_plan; \
//!   print(json.dumps(compile_plan(load_config("examples/manufacturing.yaml"))))' \
//!   > rust/millstream-core/benches/plan.json
//! ```
//!
//! Run: `cargo bench -p millstream-core --bench pipeline` (add `-- --quick` for a smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use millstream_core::decode::{decode, Limits};
use millstream_core::dedup::{DedupCache, KeyHash};
use millstream_core::json::{lookup, Found, Json, Obj};
use millstream_core::map::Mapper;
use millstream_core::plan::{PlanSpec, Profile};
use millstream_core::route::{check_subject_token, Predicate};
use millstream_core::template::Template;
use millstream_core::validate::SchemaCheck;
use millstream_core::{Pipeline, Status};

// The extension (millstream._core) runs on mimalloc; measure the core the way it ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PLAN: &str = include_str!("plan.json");

// Byte for byte like examples/events/telemetry_oil_temp_degf.json, with the gateway metadata a
// real MES gateway adds (the 200-600 byte events of the Python benchmark's mix).
const TELEMETRY: &[u8] = br#"{"plant":"dus","machine":"press-07","line":"L2","metric":"oil_temp","value":180.5,"unit":"degF","ts":1795767302123,"quality":"Good","seq":884120,"gw":"gw-dus-01","node":"ns=2;s=DUS.L2.press-07.oil_temp","path":"DUS/L2/press-07/oil_temp","server_ts":1795767302131,"status_code":0,"shift":"B","order":"WH/MO/00017"}"#;
const TELEMETRY_SUBJECT: &str = "mes.dus.press-07.telemetry";

// examples/events/stock_move_receipt_lb.json
const STOCK_MOVE: &[u8] = br#"{"_action": "Millstream: stock moves(#12)", "_id": 4720, "_model": "stock.move", "company_id": 1, "date": "2026-11-28 06:00:00", "id": 4720, "location_dest_id": 8, "location_id": 4, "origin": "P00017", "picking_id": 305, "product_id": 57, "product_uom": 15, "product_uom_qty": 500.0, "production_id": false, "quantity": 500.0, "reference": "WH/IN/00305", "state": "assigned", "write_date": "2026-11-27 07:42:10.204517"}"#;
const STOCK_MOVE_SUBJECT: &str = "odoo.stock_move";

const NOW_MS: u64 = 1_795_767_400_000;

fn plan() -> PlanSpec {
    serde_json::from_str(PLAN).expect("benches/plan.json is a plan (regenerate it, see top)")
}

fn object(bytes: &[u8]) -> Obj<'_> {
    decode(bytes, &Limits::default()).expect("fixture decodes")
}

fn telemetry(n: u64) -> Vec<u8> {
    // A distinct sample each time (new timestamp), so dedup never hits.
    let ts = 1_795_767_302_123 + n;
    format!(
        r#"{{"plant":"dus","machine":"press-07","line":"L2","metric":"oil_temp","value":180.5,"unit":"degF","ts":{ts},"quality":"Good","seq":{n},"gw":"gw-dus-01","node":"ns=2;s=DUS.L2.press-07.oil_temp","path":"DUS/L2/press-07/oil_temp","server_ts":{ts},"status_code":0,"shift":"B","order":"WH/MO/00017"}}"#
    )
    .into_bytes()
}

fn stock_move(n: u64) -> Vec<u8> {
    // A new write of one of 10k records each time, with a strictly newer write_date, so
    // neither dedup nor the stale guard drops it.
    let id = 10_000 + n % 10_000;
    let (s, us) = (n / 1_000_000, n % 1_000_000);
    let (h, m, sec) = (8 + s / 3600 % 12, s / 60 % 60, s % 60);
    format!(
        r#"{{"_action": "Millstream: stock moves(#12)", "_id": {id}, "_model": "stock.move", "company_id": 1, "date": "2026-11-28 06:00:00", "id": {id}, "location_dest_id": 8, "location_id": 4, "origin": "P00017", "picking_id": 305, "product_id": 57, "product_uom": 15, "product_uom_qty": 500.0, "production_id": false, "quantity": 500.0, "reference": "WH/IN/00305", "state": "assigned", "write_date": "2026-11-27 {h:02}:{m:02}:{sec:02}.{us:06}"}}"#
    )
    .into_bytes()
}

fn stages(c: &mut Criterion) {
    let spec = plan();
    let limits = spec.limits;

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Elements(1));

    g.bench_function("decode/telemetry", |b| {
        b.iter(|| decode(black_box(TELEMETRY), &limits))
    });
    g.bench_function("decode/stock_move", |b| {
        b.iter(|| decode(black_box(STOCK_MOVE), &limits))
    });

    let move_source = spec
        .sources
        .iter()
        .find(|s| s.name == "odoo-stock-move")
        .and_then(|s| s.schema.as_ref())
        .expect("odoo-stock-move has a source schema");
    let source_schema = SchemaCheck::compile(move_source).expect("schema compiles");
    let move_doc = Json::Obj(object(STOCK_MOVE));
    g.bench_function("source_schema/stock_move", |b| {
        b.iter(|| source_schema.check(black_box(&move_doc)))
    });

    let tel_spec = &spec.mappings["mes_telemetry"];
    let move_spec = &spec.mappings["odoo_stock_move"];
    let tel_mapper = Mapper::compile(
        "mes_telemetry",
        &tel_spec.fields,
        Profile::Json,
        &spec.units,
    )
    .expect("telemetry mapping compiles");
    let move_mapper = Mapper::compile(
        "odoo_stock_move",
        &move_spec.fields,
        Profile::OdooWebhook,
        &spec.units,
    )
    .expect("stock move mapping compiles");
    let tel_doc = object(TELEMETRY);
    let move_obj = object(STOCK_MOVE);
    g.bench_function("map/telemetry", |b| {
        b.iter(|| tel_mapper.apply(black_box(&tel_doc)))
    });
    g.bench_function("map/stock_move", |b| {
        b.iter(|| move_mapper.apply(black_box(&move_obj)))
    });

    let tel_entity = tel_mapper.apply(&tel_doc).expect("maps");
    let move_entity = move_mapper.apply(&move_obj).expect("maps");
    let tel_schema = SchemaCheck::compile(&tel_spec.schema).expect("compiles");
    let move_schema = SchemaCheck::compile(&move_spec.schema).expect("compiles");
    let tel_value = Json::Obj(tel_entity.clone());
    let move_value = Json::Obj(move_entity.clone());
    g.bench_function("canonical_schema/telemetry", |b| {
        b.iter(|| tel_schema.check(black_box(&tel_value)))
    });
    g.bench_function("canonical_schema/stock_move", |b| {
        b.iter(|| move_schema.check(black_box(&move_value)))
    });

    // Routing pieces for the telemetry route: destination rendering with the token rule,
    // the dedup key and its 128-bit hash, and the dedup cache itself.
    let route = &spec.routes[0];
    let to = Template::compile(&route.to).expect("compiles");
    let dedup_spec = route.dedup.as_ref().expect("telemetry route dedups");
    let key = Template::compile(&dedup_spec.key).expect("compiles");
    g.bench_function("route/render_destination", |b| {
        b.iter(|| {
            to.render(
                |_, p| lookup(black_box(&tel_entity), p).map_or(Found::Missing, Json::scalar),
                check_subject_token,
            )
        })
    });
    g.bench_function("dedup/render_and_hash_key", |b| {
        b.iter(|| {
            key.render(
                |_, p| lookup(black_box(&tel_entity), p).map_or(Found::Missing, Json::scalar),
                |_, _| Ok(()),
            )
            .map(|k| KeyHash::of(&k))
        })
    });
    let mut cache = DedupCache::new(dedup_spec.window, dedup_spec.capacity);
    let mut n = 0u64;
    g.bench_function("dedup/check_and_remember", |b| {
        b.iter(|| {
            n += 1;
            let k = KeyHash::of(&n.to_string());
            if !cache.is_duplicate(k, NOW_MS) {
                cache.remember(k, NOW_MS);
            }
        })
    });

    let urgent = spec
        .routes
        .iter()
        .find(|r| r.name == "quality-alerts-urgent")
        .and_then(|r| r.when.as_deref())
        .expect("quality-alerts-urgent has a predicate");
    let predicate = Predicate::compile(urgent).expect("compiles");
    let ctx = cel::Context::default();
    let hold = object(
        br#"{"hold_id": "12", "name": "QA00012", "priority": 3, "stage": "1", "status": "open", "updated_at": "2026-11-27T09:25:51Z"}"#,
    );
    g.bench_function("route/cel_predicate", |b| {
        b.iter(|| predicate.eval(&ctx, black_box(&hold), "odoo.quality_alert"))
    });

    // as the pipeline writes an output's body (`Mapper::write_entity`), and with serde_json
    // for comparison (what it used before session 6)
    for (name, mapper, entity, value) in [
        ("telemetry", &tel_mapper, &tel_entity, &tel_value),
        ("stock_move", &move_mapper, &move_entity, &move_value),
    ] {
        g.bench_function(format!("serialize/{name}"), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(512);
                mapper
                    .write_entity(&mut out, black_box(entity))
                    .map(|()| out)
            })
        });
        g.bench_function(format!("serialize_serde_json/{name}"), |b| {
            b.iter(|| serde_json::to_vec(black_box(value)))
        });
    }
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));

    let mut p = Pipeline::from_json(PLAN).expect("plan compiles");
    let mut n = 0u64;
    g.bench_function("telemetry_routed", |b| {
        b.iter_batched(
            || {
                n += 1;
                telemetry(n)
            },
            |payload| {
                let out = p.process(TELEMETRY_SUBJECT, &payload, NOW_MS);
                debug_assert_eq!(out.status, Status::Routed);
                out
            },
            BatchSize::SmallInput,
        )
    });

    let mut p = Pipeline::from_json(PLAN).expect("plan compiles");
    let mut n = 0u64;
    g.bench_function("stock_move_routed", |b| {
        b.iter_batched(
            || {
                n += 1;
                stock_move(n)
            },
            |payload| {
                let out = p.process(STOCK_MOVE_SUBJECT, &payload, NOW_MS);
                debug_assert_eq!(out.status, Status::Routed);
                out
            },
            BatchSize::SmallInput,
        )
    });

    // The same telemetry sample again: every stage runs, dedup drops it.
    let mut p = Pipeline::from_json(PLAN).expect("plan compiles");
    assert_eq!(
        p.process(TELEMETRY_SUBJECT, TELEMETRY, NOW_MS).status,
        Status::Routed
    );
    g.bench_function("telemetry_duplicate", |b| {
        b.iter(|| p.process(TELEMETRY_SUBJECT, black_box(TELEMETRY), NOW_MS))
    });

    // Bad events: one rejected while decoding, one only when its destination is rendered.
    let dup_key: &[u8] = br#"{"plant":"dus","machine":"press-07","metric":"oil_temp","value":180.5,"value":18.5,"unit":"degF","ts":1795767302123}"#;
    let injection: &[u8] = br#"{"plant":"dus","machine":"press.07","line":"L2","metric":"oil_temp","value":180.5,"unit":"degF","ts":1795767302123,"quality":"Good","seq":91}"#;
    let mut p = Pipeline::from_json(PLAN).expect("plan compiles");
    g.bench_function("bad_duplicate_key", |b| {
        b.iter(|| p.process(TELEMETRY_SUBJECT, black_box(dup_key), NOW_MS))
    });
    g.bench_function("bad_subject_injection", |b| {
        b.iter(|| p.process(TELEMETRY_SUBJECT, black_box(injection), NOW_MS))
    });
    g.finish();
}

/// Batches as the data plane runs them, against a telemetry dedup table already holding its
/// capacity of two million keys (the example's `telemetry-history`): every dedup probe then
/// misses the CPU cache, as in a router that has run for a while at high rate.
fn full_table(c: &mut Criterion) {
    const BATCH: u64 = 512;
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(30);
    let mut p = Pipeline::from_json(PLAN).expect("plan compiles");
    let mut state = p
        .export_state()
        .into_iter()
        .find(|s| s.route == "telemetry-history")
        .expect("the example has telemetry-history");
    state.dedup = (0..2_000_000u64)
        .map(|i| (KeyHash::of(&format!("old/{i}")), NOW_MS - 1_000))
        .collect();
    p.import_state(&state, NOW_MS);
    let mut n = 0u64;
    g.bench_function("telemetry_routed_full_dedup_table", |b| {
        b.iter_batched(
            || {
                (0..BATCH)
                    .map(|_| {
                        n += 1;
                        telemetry(n)
                    })
                    .collect::<Vec<_>>()
            },
            |payloads| {
                let out = p.process_batch(
                    payloads.iter().map(|b| (TELEMETRY_SUBJECT, b.as_slice())),
                    NOW_MS,
                );
                debug_assert!(out.iter().all(|o| o.status == Status::Routed));
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, stages, pipeline, full_table);
criterion_main!(benches);
