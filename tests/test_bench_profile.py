"""`millstream.bench.profile`'s attribution of perf samples to pipeline stages (pure logic, on
`perf script -F period,ip,sym` text written out by hand in perf's layout)."""

from __future__ import annotations

from millstream.bench.profile import (
    OTHER,
    ROUTER_STAGES,
    SERVER,
    SERVER_FALLBACK,
    SERVER_STAGES,
    load_for,
    samples,
    shares,
    stage_of,
)

WORKER = "millstream_core::plane::lanes::worker::{{closure}}"
PREPARE = "millstream_core::pipeline::Pipeline::prepare_guarded"
COMMIT = "millstream_core::pipeline::Pipeline::commit_guarded"


def script(*stacks: tuple[int, list[str]]) -> list[str]:
    lines: list[str] = []
    for period, frames in stacks:
        lines.append(f"    {period} ")
        lines += [f"\t          {0x8516FC + i:x} {f}" for i, f in enumerate(frames)]
        lines.append("")
    return lines


def test_samples_reads_periods_and_frames_innermost_first() -> None:
    text = script((3, ["a", "b"]), (5, ["c"]))
    assert list(samples(text)) == [(3, ["a", "b"]), (5, ["c"])]


def test_a_sample_counts_to_its_innermost_stage() -> None:
    decode = [
        "<&mut sonic_rs::serde::de::Deserializer<R> as serde_core::de::Deserializer>::"
        "deserialize_any",
        "millstream_core::decode::decode",
        PREPARE,
        WORKER,
    ]
    assert stage_of(decode, ROUTER_STAGES) == "decode (sonic-rs, our checks)"
    # the dedup probe under commit is dedup, though commit is also in the pipeline's module
    probe = ["millstream_core::dedup::slots::Slots<V>::find_key", COMMIT, WORKER]
    assert stage_of(probe, ROUTER_STAGES) == "dedup and stale guard"
    # a key template rendered inside commit counts to templates, not to dedup
    key = ["millstream_core::template::Template::render_into", COMMIT, WORKER]
    assert stage_of(key, ROUTER_STAGES) == "keys and subjects (templates)"
    # a drop names a type, not a caller: the sample counts to the frame that dropped it
    drop = ["core::ptr::drop_in_place<millstream_core::pipeline::Outcome>",
            "millstream_core::plane::egress::dispatch::{{closure}}", WORKER]  # fmt: skip
    assert stage_of(drop, ROUTER_STAGES) == "publish: CloudEvents headers, NATS protocol out"
    assert stage_of(["tokio::runtime::park", "start_thread"], ROUTER_STAGES) == OTHER


def test_the_jetstream_consumer_inside_async_nats_is_a_stage_of_its_own() -> None:
    pull = "millstream_core::plane::ingest::pull_loop::{{closure}}"
    # each JetStream message carries a client handle that async-nats clones and drops
    clone = ["<async_nats::client::Client as core::clone::Clone>::clone",
             "async_nats::jetstream::consumer::pull::Stream::poll_next", pull]  # fmt: skip
    assert stage_of(clone, ROUTER_STAGES) == "async-nats client (JetStream consumer, acks)"
    # the lane send from the same loop is the lanes' cost, not the client's
    send = ["millstream_core::plane::lanes::LaneSenders::send::{{closure}}", pull]
    assert stage_of(send, ROUTER_STAGES) == "lanes (batching between ingest and egress)"


def test_the_jetstream_profile_offers_bench_e2e_s_stock_moves_into_its_input_stream() -> None:
    load = load_for("millstream", "nats://127.0.0.1:4222", 60_000.0, 3.0, 8.0, jetstream=True)
    spec = load.spec()
    assert spec["publish"] == {"jetstream": {"window": 4096}}
    assert spec["sink"] == {"stream": {"stream": "MFG_OUT", "filter": "mfg.inventory.>"}}
    assert all(subject == "odoo.stock_move" for subject, _ in spec["templates"])
    # the load lasts past the sampled window, so the window closes while events still flow
    assert spec["rate_per_s"] == 60_000.0 and spec["duration_s"] > 3.0 + 8.0
    core = load_for("millstream", "nats://127.0.0.1:4222", 260_000.0, 12.0, 8.0, jetstream=False)
    assert core.spec()["publish"] == "core"
    assert core.spec()["sink"] == {"core": {"subject": "mfg.telemetry.>"}}


def test_the_go_runtime_counts_only_where_no_server_stage_is_on_the_stack() -> None:
    gc = ["runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"]
    assert stage_of(gc, SERVER_STAGES, SERVER_FALLBACK) == "Go runtime (GC, scheduler)"
    alloc = ["runtime.mallocgc", SERVER + "(*client).deliverMsg", SERVER + "(*client).readLoop"]
    assert stage_of(alloc, SERVER_STAGES, SERVER_FALLBACK) == "deliver: queue for subscribers"
    scan = ["bytes.Index", SERVER + "genHeaderMapIfTraceHeadersPresent",
            SERVER + "(*client).processInboundClientMsg"]  # fmt: skip
    assert stage_of(scan, SERVER_STAGES, SERVER_FALLBACK).startswith("message-trace header")


def test_shares_weigh_samples_by_period_and_sum_to_one() -> None:
    text = script(
        (300, ["millstream_core::map::Mapper::apply", PREPARE, WORKER]),
        (100, ["millstream_core::validate::SchemaCheck::check", PREPARE, WORKER]),
        (100, ["epoll_wait"]),
    )
    got = shares(text, ROUTER_STAGES)
    assert got == {
        "validate (JSON Schema)": 0.2,
        "map (fields, units, timestamps)": 0.6,
        OTHER: 0.2,
    }
    assert list(got) == ["validate (JSON Schema)", "map (fields, units, timestamps)", OTHER]
    assert shares([], ROUTER_STAGES) == {}
