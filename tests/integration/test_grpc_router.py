"""Router over gRPC with real grpcio clients against the real service on a real nats-server:
publish verdicts, PublishStream, Subscribe with replay and durable cursors, a slow
subscriber cut off while another keeps up, and a config reload under load that loses and
duplicates nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from nats.aio.client import Client as NATS

from millstream._proto.v1 import router_pb2, router_pb2_grpc
from millstream.canonical import CANONICAL_MODELS
from millstream.config import GrpcAuthConfig, GrpcConfig, SubscribeConfig, load_config
from millstream.service import Service, serving
from millstream.transport import EmbeddedNats

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "manufacturing.yaml"
EVENTS = ROOT / "examples" / "events"
CASES: list[dict[str, Any]] = yaml.safe_load((EVENTS / "cases.yaml").read_text())
MOVE = json.loads((EVENTS / "stock_move_done_dozens.json").read_text())
Status = router_pb2.Verdict.Status


def stock_move(i: int, second: int = 0) -> router_pb2.SourceEvent:
    """A distinct Odoo stock.move write (record i, version `second`)."""
    body = dict(MOVE, _id=i, id=i, write_date=f"2026-11-27 10:{second // 60:02d}:{second % 60:02d}")
    return router_pb2.SourceEvent(
        subject="odoo.stock_move", data=json.dumps(body, sort_keys=True).encode()
    )


def grpc_config(**subscribe: Any) -> GrpcConfig:
    return GrpcConfig(
        port=0, auth=GrpcAuthConfig(mode="none"), subscribe=SubscribeConfig(**subscribe)
    )


def config_doc() -> dict[str, Any]:
    """The example config with gRPC on a free port, without tokens (tests of the Router;
    security has its own tests)."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["grpc"] = {"port": 0, "auth": {"mode": "none"}}
    return doc


@pytest.fixture
async def svc(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Service]:
    path = tmp_path / "millstream.yaml"
    path.write_text(yaml.safe_dump(config_doc(), sort_keys=False))
    async with serving(
        load_config(path), nats_url=nats_server.url, metrics_port=None, store_dir=tmp_path,
        config_path=path,
    ) as s:  # fmt: skip
        yield s


@pytest.fixture
async def channel(svc: Service) -> AsyncIterator[grpc.aio.Channel]:
    assert svc.grpc is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc.port}") as ch:
        yield ch


async def test_every_example_case_gets_its_verdict_and_its_canonical_event(
    channel: grpc.aio.Channel,
) -> None:
    stub = router_pb2_grpc.RouterStub(channel)
    sub = stub.Subscribe(router_pb2.SubscribeRequest(stream="MFG_OUT", from_beginning=True))
    request = router_pb2.PublishRequest(
        batch_id=42,
        events=[
            router_pb2.SourceEvent(subject=c["subject"], data=(EVENTS / c["file"]).read_bytes())
            for c in CASES
        ],
    )
    response = await stub.Publish(request)
    assert response.batch_id == 42
    assert len(response.verdicts) == len(CASES)
    by_id: dict[str, dict[str, Any]] = {}
    for case, v in zip(CASES, response.verdicts, strict=True):
        expect = case["expect"]
        if expect["status"] == "routed":
            assert v.status == Status.ACCEPTED, (case["file"], v)
            assert [d.route for d in v.destinations] == expect["routes"]
            assert [d.subject for d in v.destinations] == expect["to"]
            assert v.canonical_type == CANONICAL_MODELS[expect["type"]].ce_type()
            assert v.canonical_id
            by_id[v.canonical_id] = case
        else:
            assert v.status == Status.REJECTED, (case["file"], v)
            assert v.reason == expect["reason"]
            assert v.detail
    # Everything kept in MFG_OUT comes back through Subscribe, byte for byte the canonical
    # entity, and parses as its pydantic model.
    want = {
        (c["file"], to)
        for c in CASES
        if c["expect"]["status"] == "routed"
        for to in c["expect"]["to"]
        if not to.startswith("mfg.telemetry")
    }
    got: list[router_pb2.SubscribedEvent] = []
    async for batch in sub:
        got.extend(batch.events)
        if len(got) >= len(want):
            break
    sub.cancel()
    assert {(by_id[e.event.id]["file"], e.subject) for e in got} == want
    for e in got:
        case = by_id[e.event.id]
        expect = case["expect"]
        data = e.event.text_data
        assert json.loads(data) == expect["data"], case["file"]
        model = CANONICAL_MODELS[expect["type"]]
        model.model_validate_json(data)
        assert e.event.type == model.ce_type()
        assert e.event.spec_version == "1.0"
        assert e.route in expect["routes"]
        assert e.sequence > 0


async def test_duplicate_stale_and_bad_events_get_their_verdicts(
    channel: grpc.aio.Channel,
) -> None:
    stub = router_pb2_grpc.RouterStub(channel)
    first = await stub.Publish(router_pb2.PublishRequest(events=[stock_move(1, second=30)]))
    (v,) = first.verdicts
    assert v.status == Status.ACCEPTED
    assert [d.subject for d in v.destinations] == ["mfg.inventory.movement.done"]
    again = await stub.Publish(
        router_pb2.PublishRequest(
            events=[
                stock_move(1, second=30),  # the same write again
                stock_move(1, second=10),  # an older version of the same record
                router_pb2.SourceEvent(subject="odoo.stock_move", data=b'{"_model": '),
                router_pb2.SourceEvent(subject="nobody.listens.here", data=b"{}"),
            ]
        )
    )
    dup, stale, bad, unknown = again.verdicts
    assert dup.status == Status.DUPLICATE
    assert dup.canonical_id == v.canonical_id
    assert [(s.route, s.status) for s in dup.skipped] == [("inventory-movements", "duplicate")]
    assert stale.status == Status.STALE
    assert [(s.route, s.status) for s in stale.skipped] == [("inventory-movements", "stale")]
    assert bad.status == Status.REJECTED
    assert bad.reason == "malformed_json"
    assert unknown.status == Status.REJECTED
    assert unknown.reason == "unknown_source"


async def test_a_request_that_is_not_a_publish_request_is_invalid(
    channel: grpc.aio.Channel,
) -> None:
    raw = channel.unary_unary("/millstream.v1.Router/Publish")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await raw(b"\xff\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stub = router_pb2_grpc.RouterStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Publish(
            router_pb2.PublishRequest(events=[router_pb2.SourceEvent(subject="odoo.>")])
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "event 0" in (e.value.details() or "")


async def test_publish_stream_answers_every_batch(svc: Service, channel: grpc.aio.Channel) -> None:
    stub = router_pb2_grpc.RouterStub(channel)

    async def batches() -> AsyncIterator[router_pb2.PublishRequest]:
        for b in range(20):
            yield router_pb2.PublishRequest(
                batch_id=b, events=[stock_move(1000 + b * 50 + i) for i in range(50)]
            )

    seen: dict[int, list[int]] = {}
    async for resp in stub.PublishStream(batches()):
        seen[resp.batch_id] = [v.status for v in resp.verdicts]
    assert sorted(seen) == list(range(20))
    assert all(s == [Status.ACCEPTED] * 50 for s in seen.values())
    assert svc.stats()["inputs"]["grpc"] == 1000


async def test_subscribe_replays_from_a_sequence_and_resumes_a_durable_cursor(
    channel: grpc.aio.Channel,
) -> None:
    stub = router_pb2_grpc.RouterStub(channel)
    await stub.Publish(router_pb2.PublishRequest(events=[stock_move(i) for i in range(1, 31)]))

    async def read(n: int, **start: Any) -> list[router_pb2.SubscribedEvent]:
        call = stub.Subscribe(
            router_pb2.SubscribeRequest(routes=["inventory-movements"], max_batch=7, **start)
        )
        out: list[router_pb2.SubscribedEvent] = []
        async for batch in call:
            assert len(batch.events) <= 7
            out.extend(batch.events)
            if len(out) >= n:
                break
        call.cancel()
        return out

    everything = await read(30, from_beginning=True)
    ids = [json.loads(e.event.text_data)["movement_id"] for e in everything]
    assert ids == [str(i) for i in range(1, 31)]
    seqs = [e.sequence for e in everything]
    assert seqs == sorted(seqs)
    rest = await read(10, from_sequence=seqs[20])
    assert [e.sequence for e in rest] == seqs[20:]

    # a durable cursor: a subscriber that committed what it processed resumes right after
    # it; until then its start applies, so nothing it did not commit is skipped
    first = await read(10, from_beginning=True, durable="planning")
    assert [e.sequence for e in first[:10]] == seqs[:10]
    again = await read(10, from_beginning=True, durable="planning")
    assert [e.sequence for e in again[:10]] == seqs[:10]
    commit = await stub.Commit(router_pb2.CommitRequest(durable="planning", sequence=seqs[6]))
    assert commit.previous == 0
    second = await read(23, from_beginning=True, durable="planning")
    assert [e.sequence for e in second] == seqs[7:]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Commit(router_pb2.CommitRequest(durable="nobody", sequence=1))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_subscribe_from_a_time_starts_with_what_was_stored_after_it(
    channel: grpc.aio.Channel,
) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    stub = router_pb2_grpc.RouterStub(channel)
    await stub.Publish(router_pb2.PublishRequest(events=[stock_move(i) for i in range(1, 11)]))
    await asyncio.sleep(0.2)
    since = Timestamp()
    since.GetCurrentTime()
    await asyncio.sleep(0.2)
    await stub.Publish(router_pb2.PublishRequest(events=[stock_move(i) for i in range(11, 16)]))
    call = stub.Subscribe(
        router_pb2.SubscribeRequest(routes=["inventory-movements"], from_time=since)
    )
    got: list[str] = []
    async for batch in call:
        got.extend(json.loads(e.event.text_data)["movement_id"] for e in batch.events)
        if len(got) >= 5:
            break
    call.cancel()
    assert got == [str(i) for i in range(11, 16)]


async def test_subscribe_filters_by_type_and_refuses_unknown_ones(
    channel: grpc.aio.Channel,
) -> None:
    stub = router_pb2_grpc.RouterStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in stub.Subscribe(router_pb2.SubscribeRequest(canonical_types=["widget"])):
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as e:
        # telemetry history is best effort to mfg.telemetry.*, which no stream keeps
        async for _ in stub.Subscribe(router_pb2.SubscribeRequest(routes=["telemetry-history"])):
            pass
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    cases = [c for c in CASES if c["expect"]["status"] == "routed"]
    await stub.Publish(
        router_pb2.PublishRequest(
            events=[
                router_pb2.SourceEvent(subject=c["subject"], data=(EVENTS / c["file"]).read_bytes())
                for c in cases
            ]
        )
    )
    want = sum(1 for c in cases if c["expect"]["type"] == "stock_level" for _ in c["expect"]["to"])
    call = stub.Subscribe(
        router_pb2.SubscribeRequest(canonical_types=["stock_level"], from_beginning=True)
    )
    got: list[router_pb2.SubscribedEvent] = []
    async for batch in call:
        got.extend(batch.events)
        if len(got) >= want:
            break
    call.cancel()
    assert {e.event.type for e in got} == {CANONICAL_MODELS["stock_level"].ce_type()}


async def test_a_slow_subscriber_is_cut_off_while_a_fast_one_gets_everything(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    config = load_config(EXAMPLE).model_copy(
        update={"grpc": grpc_config(buffer=2, max_stall="300ms")}
    )
    n = 6000
    async with serving(
        config, nats_url=nats_server.url, metrics_port=None, store_dir=tmp_path
    ) as svc:
        assert svc.grpc is not None
        target = f"127.0.0.1:{svc.grpc.port}"
        # two clients, as two services would be
        fast_ch = grpc.aio.insecure_channel(target)
        # without BDP probing the slow client's window stays small, so its unread events
        # back up into the router instead of into the client library
        slow_ch = grpc.aio.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)])
        stub = router_pb2_grpc.RouterStub(fast_ch)
        fast = stub.Subscribe(
            router_pb2.SubscribeRequest(routes=["inventory-movements"], max_batch=100)
        )
        slow = router_pb2_grpc.RouterStub(slow_ch).Subscribe(
            router_pb2.SubscribeRequest(routes=["inventory-movements"], max_batch=100)
        )
        await asyncio.sleep(0.3)
        for b in range(0, n, 500):
            await stub.Publish(
                router_pb2.PublishRequest(events=[stock_move(i) for i in range(b + 1, b + 501)])
            )

        async def read_fast() -> int:
            count = 0
            async for batch in fast:
                count += len(batch.events)
                if count >= n:
                    break
            return count

        async def read_slow() -> tuple[grpc.StatusCode, int, str]:
            count = 0
            try:
                async for batch in slow:
                    if count == 0:
                        await asyncio.sleep(2)  # stops reading for longer than max_stall
                    count += len(batch.events)
            except grpc.aio.AioRpcError as e:
                return e.code(), count, e.details() or ""
            return grpc.StatusCode.OK, count, ""

        got, (cut, slow_got, why) = await asyncio.gather(read_fast(), read_slow())
        fast.cancel()
        await fast_ch.close()
        await slow_ch.close()
        assert got == n
        # it learns why once it reads again, after what was already on its way to it
        assert cut == grpc.StatusCode.RESOURCE_EXHAUSTED, why
        assert slow_got < n
        assert "resume with from_sequence=" in why


async def test_reload_under_load_loses_and_duplicates_nothing(
    svc: Service, channel: grpc.aio.Channel, nc: NATS, tmp_path: Path
) -> None:
    stub = router_pb2_grpc.RouterStub(channel)
    doc = config_doc()
    for r in doc["routes"]:
        if r["name"] == "inventory-movements":
            r["to"] = "mfg.inventory.moved.{status}"
    new_yaml = yaml.safe_dump(doc, sort_keys=False)

    # Batches keep coming while the reload runs: it starts after the third, and three more
    # follow once it is done, however fast this machine is.
    verdicts: list[router_pb2.Verdict] = []
    reload: asyncio.Task[tuple[str, str]] | None = None
    after = 0
    for b in range(500):
        resp = await stub.Publish(
            router_pb2.PublishRequest(
                events=[stock_move(i) for i in range(b * 200 + 1, b * 200 + 201)]
            )
        )
        verdicts.extend(resp.verdicts)
        if b == 2:
            reload = asyncio.create_task(svc.reload(new_yaml))
        if reload is not None and reload.done():
            after += 1
            if after > 3:
                break
    assert reload is not None and reload.done()
    previous, new = reload.result()
    n = len(verdicts)
    assert previous != new
    assert svc.plan_version == new
    assert all(v.status == Status.ACCEPTED for v in verdicts)
    subjects = [v.destinations[0].subject for v in verdicts]
    assert subjects[0] == "mfg.inventory.movement.done"
    assert subjects[-1] == "mfg.inventory.moved.done"
    # once switched, never back
    switched = subjects.index("mfg.inventory.moved.done")
    assert set(subjects[switched:]) == {"mfg.inventory.moved.done"}
    # every event stored exactly once across both subjects
    info = await nc.jetstream().stream_info("MFG_OUT")
    assert info.state.messages == n
    # dedup state carried over: a write seen before the reload is still a duplicate
    resp = await stub.Publish(router_pb2.PublishRequest(events=[stock_move(1)]))
    assert resp.verdicts[0].status == Status.DUPLICATE


async def test_reload_refuses_what_needs_a_restart(svc: Service) -> None:
    from millstream.errors import ConfigError, ReloadRefused

    doc = config_doc()
    doc["streams"]["MFG_OUT"]["max_age"] = "1d"
    with pytest.raises(ReloadRefused, match="streams"):
        await svc.reload(yaml.safe_dump(doc))
    with pytest.raises(ConfigError):
        await svc.reload("routes: [")
    version = svc.plan_version
    previous, new = await svc.reload(None)  # re-read the file: nothing changed
    assert previous == new == version


async def test_shutdown_ends_open_subscriptions_cleanly(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    config = load_config(EXAMPLE).model_copy(update={"grpc": grpc_config()})
    got: list[int] = []
    async with serving(
        config, nats_url=nats_server.url, metrics_port=None, store_dir=tmp_path
    ) as svc:
        assert svc.grpc is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc.port}") as ch:
            stub = router_pb2_grpc.RouterStub(ch)
            call = stub.Subscribe(
                router_pb2.SubscribeRequest(routes=["inventory-movements"], from_beginning=True)
            )
            await stub.Publish(
                router_pb2.PublishRequest(events=[stock_move(i) for i in range(1, 6)])
            )

            async def read() -> None:
                async for batch in call:
                    got.extend(e.sequence for e in batch.events)

            reader = asyncio.create_task(read())
            while len(got) < 5:
                await asyncio.sleep(0.05)
            svc.stop()
            # the stream ends as a stream does, not as a cancelled or failed call
            await reader
            assert await call.code() == grpc.StatusCode.OK
    assert len(got) == 5
