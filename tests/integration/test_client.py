"""`millstream.Client` and `AsyncClient` against the running service (example config, real
nats-server, real data plane): admin calls, bearer tokens, TLS and mutual TLS, and a
publish/subscribe round trip through the Router.

The service runs on the test's event loop, so the blocking client runs in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from nats.aio.client import Client as NATS

import millstream._core as core
from millstream import AsyncClient, Client
from millstream._proto.v1 import router_pb2
from millstream.client import publish_request, replay_request, subscribe_request
from millstream.config import parse_config
from millstream.service import Service, serving
from millstream.transport import EmbeddedNats

from ..conftest import EXAMPLES

pytestmark = pytest.mark.integration

EXAMPLE = EXAMPLES / "manufacturing.yaml"
EVENTS = EXAMPLES / "events"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
TEXT = EXAMPLE_TEXT + "\ngrpc:\n  port: 0\n  auth: {mode: none}\n"
TELEMETRY = "mes.dus.press-07.telemetry"
HAS_ROUTER = hasattr(core.Plane, "publish") and hasattr(core.Plane, "subscribe")
needs_router = pytest.mark.skipif(
    not HAS_ROUTER,
    reason="the extension has no Plane.publish/subscribe yet (Router, issue 5, being built)",
)
Verdict = router_pb2.Verdict


@contextlib.asynccontextmanager
async def running(
    nats_server: EmbeddedNats, tmp_path: Path, text: str = TEXT
) -> AsyncIterator[tuple[Service, str]]:
    """The service, and the target a client dials."""
    config = parse_config(text, source=str(EXAMPLE), base_dir=EXAMPLES)
    async with serving(
        config, nats_url=nats_server.url, store_dir=tmp_path, metrics_port=None
    ) as svc:
        assert svc.grpc is not None
        yield svc, f"localhost:{svc.grpc.port}"


def in_thread(work: Callable[[], Any]) -> Any:
    return asyncio.wait_for(asyncio.to_thread(work), timeout=60)


# --- requests, without a server ----------------------------------------------------------


def test_events_are_tuples_or_source_events() -> None:
    given = router_pb2.SourceEvent(subject="odoo.sale_order", data=b"{}")
    request = publish_request(
        [
            ("mes.a.b.telemetry", {"value": 1.5, "unit": "degC"}),
            ("mes.a.b.telemetry", b'{"raw": true}'),
            ("mes.a.b.telemetry", '{"text": "é"}'),
            given,
        ]
    )
    assert [json.loads(e.data) for e in request.events] == [
        {"value": 1.5, "unit": "degC"},
        {"raw": True},
        {"text": "é"},
        {},
    ]
    assert request.events[3] == given
    with pytest.raises(TypeError, match="bytes, str or a mapping"):
        publish_request([("s", 42)])  # type: ignore[list-item]


UTC = datetime.UTC


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({}, None),
        ({"from_sequence": 12}, "from_sequence"),
        ({"from_beginning": True}, "from_beginning"),
        ({"from_time": datetime.datetime(2026, 11, 27, 8, tzinfo=UTC)}, "from_time"),
    ],
)
def test_subscribe_starts(kwargs: dict[str, Any], start: str | None) -> None:
    request = subscribe_request(routes=["sales-orders"], **kwargs)
    assert request.WhichOneof("start") == start
    assert list(request.routes) == ["sales-orders"]
    if start == "from_time":
        assert request.from_time.ToJsonString() == "2026-11-27T08:00:00Z"


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (
            lambda: subscribe_request(from_sequence=3, from_beginning=True),
            "at most one of from_sequence, from_time and from_beginning",
        ),
        (
            lambda: subscribe_request(from_time=datetime.datetime(2026, 11, 27)),
            "from_time needs a timezone",
        ),
        (lambda: replay_request(), "exactly one of"),
        (lambda: replay_request([1], reason="unknown_unit"), "exactly one of"),
        (lambda: replay_request([]), "no sequences"),
        (lambda: Client("localhost:1", certificate_chain=b"pem"), "needs its private key"),
        (
            lambda: Client("localhost:1", tls=grpc.ssl_channel_credentials(), private_key=b"k"),
            "not both",
        ),
    ],
)
def test_requests_that_cannot_be_made(make: Callable[[], Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        make()


def test_replay_selections() -> None:
    assert list(replay_request([3, 1]).sequences.sequences) == [3, 1]
    by_reason = replay_request(reason="unknown_unit", remove=True)
    assert (by_reason.selector.reason, by_reason.remove) == ("unknown_unit", True)
    everything = replay_request(everything=True, dry_run=True)
    assert everything.WhichOneof("selection") == "selector"
    assert everything.selector == type(everything.selector)()


# --- admin -------------------------------------------------------------------------------


async def test_sync_client_admin_calls(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    async with running(nats_server, tmp_path) as (svc, target):

        def work() -> dict[str, Any]:
            with Client(target, timeout=10) as c:
                out: dict[str, Any] = {
                    "stats": c.stats(),
                    "routes": c.routes(),
                    "ok": c.check_config(TEXT),
                    "bad": c.check_config(TEXT.replace("lane: bulk", "lane: slow")),
                    "letters": c.dead_letters(),
                    "replay": c.replay_dead_letters(everything=True, dry_run=True),
                }
                with pytest.raises(grpc.RpcError) as info:
                    c.dead_letters(reason="not.a.reason")
                out["error"] = info.value
                return out

        got = await in_thread(work)
    assert got["stats"].config_version == svc.plan_version
    assert got["stats"].stats["events_in"] == 0
    assert [r.name for r in got["routes"].routes] == [r.name for r in svc.config.routes]
    assert got["ok"].ok
    assert got["ok"].config_version == svc.plan_version
    assert [
        (e.location, "'critical', 'standard' or 'bulk'" in e.message) for e in got["bad"].errors
    ] == [("routes.0.lane", True)]
    assert got["letters"] == []
    assert (got["replay"].replayed, got["replay"].failed) == (0, 0)
    assert got["error"].code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_async_client_dead_letters_and_reload(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    bad = (EVENTS / "telemetry_unknown_unit.json").read_bytes()
    async with (
        running(nats_server, tmp_path) as (svc, target),
        AsyncClient(target, timeout=10) as c,
    ):
        await nc.publish(TELEMETRY, bad)
        deadline = time.monotonic() + 10
        while not (letters := await c.dead_letters(reason="unknown_unit")):
            assert time.monotonic() < deadline, "no dead letter within 10s"
            await asyncio.sleep(0.05)
        [dl] = letters
        assert (dl.reason, dl.subject, dl.payload) == ("unknown_unit", TELEMETRY, bad)
        replayed = await c.replay_dead_letters([dl.sequence], dry_run=True)
        assert [(r.sequence, r.subject, r.ok) for r in replayed.results] == [
            (dl.sequence, TELEMETRY, True)
        ]
        # a reload that touches the NATS connection needs a restart: refused, still running
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await c.reload_config(TEXT.replace("name: millstream-dus", "name: elsewhere"))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (await c.stats()).config_version == svc.plan_version


# --- security ----------------------------------------------------------------------------

TOKEN = "s3cret-token-for-the-ops-team"


async def test_token_is_sent_on_every_call(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILLSTREAM_TEST_TOKENS", f"ops:admin:{TOKEN}")
    text = EXAMPLE_TEXT + "\ngrpc:\n  port: 0\n  auth: {tokens_env: MILLSTREAM_TEST_TOKENS}\n"
    async with running(nats_server, tmp_path, text) as (svc, target):
        async with AsyncClient(target, token=TOKEN, timeout=10) as c:
            assert (await c.stats()).config_version == svc.plan_version
            assert len((await c.routes()).routes) == len(svc.config.routes)
        async with AsyncClient(target, timeout=10) as anonymous:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await anonymous.stats()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

        def sync_calls() -> int:
            with Client(target, token=TOKEN, timeout=10) as c:
                return len(c.routes().routes) + len(c.dead_letters())

        assert await in_thread(sync_calls) == len(svc.config.routes)


async def test_mutual_tls_with_pem_files(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost")
    client_cert = ca.issue_cert("dashboard.acme.example")
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "server.pem": b"".join(pem.bytes() for pem in server_cert.cert_chain_pems),
        "server.key": server_cert.private_key_pem.bytes(),
        "client.pem": client_cert.cert_chain_pems[0].bytes(),
        "client.key": client_cert.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    text = EXAMPLE_TEXT + (
        "\ngrpc:\n  port: 0\n  auth: {mode: none}\n"
        f"  tls: {{cert: {tmp_path / 'server.pem'}, key: {tmp_path / 'server.key'}, "
        f"client_ca: {tmp_path / 'ca.pem'}}}\n"
    )
    async with running(nats_server, tmp_path, text) as (svc, target):
        # PEM file paths for the blocking client, PEM bytes for the asyncio one
        def sync_stats() -> str:
            with Client(
                target,
                root_certificates=tmp_path / "ca.pem",
                certificate_chain=str(tmp_path / "client.pem"),
                private_key=tmp_path / "client.key",
                timeout=10,
            ) as c:
                return c.stats().config_version

        assert await in_thread(sync_stats) == svc.plan_version
        async with AsyncClient(
            target,
            root_certificates=files["ca.pem"],
            certificate_chain=files["client.pem"],
            private_key=files["client.key"],
            timeout=10,
        ) as c:
            assert (await c.stats()).config_version == svc.plan_version
        # no client certificate: the handshake fails
        async with AsyncClient(target, root_certificates=files["ca.pem"], timeout=5) as c:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await c.stats()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# --- router ------------------------------------------------------------------------------


def example_event(file: str) -> bytes:
    return (EVENTS / file).read_bytes()


def payload(event: router_pb2.SubscribedEvent) -> Any:
    ce = event.event
    return json.loads(ce.text_data if ce.HasField("text_data") else ce.binary_data)


@needs_router
async def test_async_publish_then_subscribe(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    async with (
        running(nats_server, tmp_path) as (_, target),
        AsyncClient(target, timeout=10) as c,
    ):
        verdicts = await c.publish(
            [
                ("odoo.sale_order", example_event("sale_order_confirmed.json")),
                (TELEMETRY, example_event("telemetry_unknown_unit.json")),
            ]
        )
        assert [v.status for v in verdicts] == [Verdict.ACCEPTED, Verdict.REJECTED]
        assert [(d.route, d.subject) for d in verdicts[0].destinations] == [
            ("sales-orders", "mfg.sales.order.confirmed")
        ]
        assert verdicts[0].canonical_type == "com.millstream.sales_order.v1"
        assert verdicts[1].reason == "unknown_unit"
        # the same event again is a duplicate
        [again] = await c.publish([("odoo.sale_order", example_event("sale_order_confirmed.json"))])
        assert again.status == Verdict.DUPLICATE

        events = c.subscribe(routes=["sales-orders"], from_beginning=True, timeout=20)
        async with contextlib.aclosing(events):
            first = await anext(events)
        assert first.event.id == verdicts[0].canonical_id
        assert first.event.type == "com.millstream.sales_order.v1"
        assert (first.route, first.subject) == ("sales-orders", "mfg.sales.order.confirmed")
        assert first.sequence >= 1
        assert payload(first)["order_id"] == "42"


@needs_router
async def test_sync_publish_stream_then_subscribe(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    batches = [
        [("odoo.stock_move", example_event("stock_move_done_dozens.json"))],
        [
            ("odoo.stock_move", example_event("stock_move_receipt_lb.json")),
            ("odoo.stock_move", example_event("stock_move_unknown_state.json")),
        ],
    ]
    async with running(nats_server, tmp_path) as (_, target):

        def work() -> tuple[list[router_pb2.PublishResponse], list[router_pb2.SubscribedEvent]]:
            with Client(target, timeout=10) as c:
                responses = list(c.publish_stream(iter(batches), timeout=20))
                received = []
                for event in c.subscribe(
                    canonical_types=["inventory_movement"], from_beginning=True, timeout=20
                ):
                    received.append(event)
                    if len(received) == 2:
                        break  # leaving the loop cancels the call
                return responses, received

        responses, received = await in_thread(work)
    by_batch = {r.batch_id: [v.status for v in r.verdicts] for r in responses}
    assert by_batch == {1: [Verdict.ACCEPTED], 2: [Verdict.ACCEPTED, Verdict.REJECTED]}
    assert sorted((e.subject, payload(e)["movement_id"]) for e in received) == [
        ("mfg.inventory.movement.done", "4711"),
        ("mfg.inventory.movement.reserved", "4720"),
    ]
