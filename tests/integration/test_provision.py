"""JetStream provisioning against a real nats-server: what `millstream run` creates before the
data plane starts, and that running it again changes nothing."""

from __future__ import annotations

import re

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from millstream.config import Config, load_config, parse_config
from millstream.errors import ProvisionError
from millstream.transport.provision import provision

from ..conftest import EXAMPLES, MINI

pytestmark = pytest.mark.integration

DAY = 86_400.0
ODOO_SOURCES = [
    "odoo-stock-move",
    "odoo-stock-quant",
    "odoo-mrp-production",
    "odoo-sale-order",
    "odoo-receipt",
    "odoo-quality-alert",
]


@pytest.fixture
def example() -> Config:
    return load_config(EXAMPLES / "manufacturing.yaml")


def mini(
    odoo: str = '  ODOO: {subjects: ["odoo.>"]}', jetstream: str = "{stream: ODOO}", extra: str = ""
) -> Config:
    """MINI plus stream ODOO (as given), with the odoo_quality source reading it."""
    quality = '  QUALITY: {subjects: ["quality.>"]}'
    text = MINI.replace(quality, quality + "\n" + odoo).replace(
        "    mapping: hold\n", f"    mapping: hold\n    jetstream: {jetstream}\n"
    )
    return parse_config(extra + text)


async def test_example_config_gets_streams_consumers_dlq_and_bucket(
    nc: NATS, example: Config
) -> None:
    js = nc.jetstream()
    lines = await provision(js, example)
    assert "stream ODOO_IN: created (odoo.>; file; max_age 7d; duplicate_window 2m)" in lines
    assert any(line.startswith("stream MFG_OUT: created") for line in lines)
    assert "object store MILLSTREAM_STATE: created" in lines

    odoo = (await js.stream_info("ODOO_IN")).config
    assert odoo.subjects == ["odoo.>"]
    assert (odoo.max_age, odoo.duplicate_window) == (7 * DAY, 120.0)
    assert (odoo.storage, odoo.retention) == ("file", "limits")
    out = (await js.stream_info("MFG_OUT")).config
    for route in example.routes:
        if route.delivery == "at_least_once":
            dest = re.sub(r"\{[^}]+\}", "x", route.to)
            assert await js.find_stream_name_by_subject(dest) == "MFG_OUT", route.name
    assert out.max_age == 7 * DAY

    dlq = (await js.stream_info("MILLSTREAM_DLQ")).config
    assert dlq.subjects == ["millstream.dlq.>"]
    assert (dlq.max_age, dlq.storage) == (30 * DAY, "file")

    for name in ODOO_SOURCES:
        c = (await js.consumer_info("ODOO_IN", f"millstream-{name}")).config
        source = next(s for s in example.sources if s.name == name)
        assert c.durable_name == f"millstream-{name}"
        assert c.deliver_subject is None  # pull
        assert (c.deliver_policy, c.ack_policy) == ("all", "explicit")
        assert c.filter_subjects == source.subjects
        assert c.ack_wait == 30.0
        # Millstream dead-letters after its own max_deliver; the server must keep delivering.
        assert c.max_deliver == -1
        assert c.max_ack_pending == 20_000
    # telemetry stays on core NATS: no consumer for it anywhere
    names = [c.name for c in await js.consumers_info("ODOO_IN")]
    assert sorted(names) == sorted(f"millstream-{n}" for n in ODOO_SOURCES)

    await js.object_store("MILLSTREAM_STATE")  # raises if missing


async def test_second_run_changes_nothing(nc: NATS, example: Config) -> None:
    js = nc.jetstream()
    await provision(js, example)
    before = await js.consumer_info("ODOO_IN", "millstream-odoo-stock-move")
    stream_before = await js.stream_info("ODOO_IN")
    again = await provision(js, example)
    assert again == [
        "stream ODOO_IN: up to date",
        "stream MFG_OUT: up to date",
        "stream MILLSTREAM_DLQ: up to date",
        *[f"consumer ODOO_IN/millstream-{n} (source {n}): up to date" for n in ODOO_SOURCES],
        "object store MILLSTREAM_STATE: exists",
    ]
    after = await js.consumer_info("ODOO_IN", "millstream-odoo-stock-move")
    assert after.created == before.created
    assert after.config == before.config
    assert (await js.stream_info("ODOO_IN")).config == stream_before.config


async def test_changed_settings_update_in_place_and_keep_the_position(nc: NATS) -> None:
    js = nc.jetstream()
    await provision(js, mini())
    # An operator tuned something Millstream does not manage: it must survive the update.
    odoo = (await js.stream_info("ODOO")).config
    await js.update_stream(odoo.evolve(max_msgs=1_000_000))
    # The consumer has read and acked one event: an update must not make it start over.
    await js.publish("odoo.quality_alert", b"{}")
    await js.publish("odoo.quality_alert", b"{}")
    sub = await js.pull_subscribe_bind("millstream-odoo_quality", stream="ODOO")
    (msg,) = await sub.fetch(1, timeout=2)
    await msg.ack_sync()
    await sub.unsubscribe()

    changed = mini(
        odoo='  ODOO: {subjects: ["odoo.>"], max_age: 1d}',
        jetstream="{stream: ODOO, ack_wait: 1m}",
    )
    lines = await provision(js, changed)
    assert "stream ODOO: updated max_age unlimited -> 1d" in lines
    consumer = "consumer ODOO/millstream-odoo_quality (source odoo_quality)"
    assert f"{consumer}: updated ack_wait 30s -> 1m" in lines

    odoo = (await js.stream_info("ODOO")).config
    assert (odoo.max_age, odoo.max_msgs) == (DAY, 1_000_000)
    info = await js.consumer_info("ODOO", "millstream-odoo_quality")
    assert info.config.ack_wait == 60.0
    assert info.ack_floor.stream_seq == 1
    assert info.num_pending == 1


async def test_unmanaged_stream_is_only_checked(nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="ODOO", subjects=["odoo.>"], max_age=3600))
    config = mini('  ODOO: {subjects: ["odoo.quality_alert"], max_age: 7d, manage: false}')
    lines = await provision(js, config)
    assert "stream ODOO: exists (managed elsewhere)" in lines
    assert (await js.stream_info("ODOO")).config.max_age == 3600.0  # left alone
    # ... while the consumer on it is still Millstream's to create
    await js.consumer_info("ODOO", "millstream-odoo_quality")


# (id, YAML for stream ODOO, stream that exists before provisioning, expected message parts)
FAILURES = [
    (
        "unmanaged_stream_missing",
        '  ODOO: {subjects: ["odoo.>"], manage: false}',
        None,
        ["stream ODOO does not exist", "manage: false", "set 'manage: true'"],
    ),
    (
        "unmanaged_stream_too_narrow",
        '  ODOO: {subjects: ["odoo.>"], manage: false}',
        StreamConfig(name="ODOO", subjects=["odoo.stock_move"]),
        ["stream ODOO exists but does not store odoo.>", "its subjects: odoo.stock_move"],
    ),
    (
        "another_stream_holds_the_subjects",
        '  ODOO: {subjects: ["odoo.>"]}',
        StreamConfig(name="ERP", subjects=["odoo.quality_alert"]),
        ["stream ODOO: cannot create it", "stream ERP already stores", "manage: false"],
    ),
    (
        "storage_cannot_change",
        '  ODOO: {subjects: ["odoo.>"], storage: memory}',
        StreamConfig(name="ODOO", subjects=["odoo.>"]),
        ["stream ODOO: it exists with file storage", "asks for memory"],
    ),
]


@pytest.mark.parametrize(
    ("odoo", "existing", "fragments"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
async def test_what_cannot_be_provisioned_is_a_clear_error(
    nc: NATS, odoo: str, existing: StreamConfig | None, fragments: list[str]
) -> None:
    js = nc.jetstream()
    if existing is not None:
        await js.add_stream(existing)
    config = mini(odoo)
    with pytest.raises(ProvisionError) as info:
        await provision(js, config)
    for frag in fragments:
        assert frag in str(info.value)


async def test_state_bucket_is_skipped_when_state_is_off(nc: NATS) -> None:
    js = nc.jetstream()
    lines = await provision(js, mini(extra="state: {enabled: false}\n"))
    assert not any("object store" in line for line in lines)
    assert "OBJ_MILLSTREAM_STATE" not in [s.config.name for s in await js.streams_info()]
