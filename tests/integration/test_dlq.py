"""`millstream dlq` against a real nats-server: synthetic dead letters carrying the headers
the router writes, then ls filters, show, replay (JetStream and core), --remove, errors, and
the command line end to end."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from millstream import dlq
from millstream.dlq import (
    DeadLetterError,
    DeadLetterFilter,
    DeadLetterNotFound,
    format_dead_letter,
    get_dead_letter,
    list_dead_letters,
    replay,
)
from millstream.transport import EmbeddedNats
from tests.conftest import MINI

pytestmark = pytest.mark.integration

STREAM = "MILLSTREAM_DLQ"
QUANT = (
    b'{"_action": "Millstream: stock levels(#13)", "_id": 915, "_model": "stock.quant", '
    b'"location_id": "a.b", "product_id": 57, "product_uom_id": 12, "quantity": 1250.5, '
    b'"write_date": "2026-11-27 07:50:33"}'
)
MOVE = (
    b'{"_action": "Millstream: stock moves(#12)", "_id": 4741, "_model": "stock.move", '
    b'"product_uom": 99, "state": "done", "write_date": "2026-11-27 09:31:12"}'
)
CUT = b'{"plant":"dus","machine":"press-07","metric":"oil_t'
WILDCARD = b'{"plant":"dus","machine":"*","metric":"oil_temp","value":180.5,"unit":"degF"}'
DUPKEY = b'{"plant":"dus","machine":"press-07","value":1.5,"value":15}'
BIG = json.dumps({"_model": "stock.picking", "move_ids": list(range(3000))}).encode()

# (payload, headers without the common ones); sequence = position + 1
LETTERS: list[tuple[bytes, dict[str, str]]] = [
    (
        QUANT,
        {
            "Millstream-Reason": "subject_rejected",
            "Millstream-Detail": 'location_id = "a.b" is not a safe subject token',
            "Millstream-Route": "stock-levels",
            "Millstream-Source": "odoo-stock-quant",
            "Millstream-Subject": "odoo.stock_quant",
        },
    ),
    (
        CUT,
        {
            "Millstream-Reason": "malformed_json",
            "Millstream-Detail": "EOF while parsing a string at line 1 column 51",
            "Millstream-Source": "mes-telemetry",
            "Millstream-Subject": "mes.dus.press-07.telemetry",
        },
    ),
    (
        MOVE,
        {
            "Millstream-Reason": "unknown_unit",
            "Millstream-Detail": 'quantity: unknown unit "99"',
            "Millstream-Source": "odoo-stock-move",
            "Millstream-Subject": "odoo.stock_move",
        },
    ),
    (
        WILDCARD,
        {
            "Millstream-Reason": "subject_rejected",
            "Millstream-Detail": 'machine_id = "*" is not a safe subject token',
            "Millstream-Route": "telemetry-history",
            "Millstream-Source": "mes-telemetry",
            "Millstream-Subject": "mes.dus.press-09.telemetry",
        },
    ),
    (
        DUPKEY,
        {
            "Millstream-Reason": "duplicate_key",
            "Millstream-Detail": 'duplicate key "value" — Maßabweichung Ø12',
            "Millstream-Source": "mes-telemetry",
            "Millstream-Subject": "mes.dus.press-07.telemetry",
        },
    ),
    (BIG, {"Millstream-Reason": "too_large", "Millstream-Subject": "odoo.stock_picking"}),
    # no Millstream-Subject: a replay cannot know where it goes
    (b"\xff\xfe not utf-8", {"Millstream-Reason": "invalid_utf8"}),
    # would loop: the original subject is in the dead-letter stream itself
    (
        b"{}",
        {
            "Millstream-Reason": "no_route",
            "Millstream-Subject": "millstream.dlq.no_route",
        },
    ),
]


async def setup(nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["millstream.dlq.>"])
    await js.add_stream(name="ODOO_IN", subjects=["odoo.>"])
    for i, (payload, headers) in enumerate(LETTERS):
        hdrs = {
            **headers,
            "Millstream-Config-Version": "3f2a9c1d",
            "Millstream-Attempt": str(i % 3 + 1),
            "Millstream-Time": f"2026-11-27T09:{i:02d}:00.5Z",
        }
        ack = await js.publish(
            f"millstream.dlq.{headers['Millstream-Reason']}", payload, headers=hdrs
        )
        assert ack.seq == i + 1


def seqs(letters: Sequence[dlq.DeadLetter]) -> list[int]:
    return [dl.seq for dl in letters]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, [1, 2, 3, 4, 5, 6, 7, 8]),
        ({"reason": "subject_rejected"}, [1, 4]),
        ({"route": "telemetry-history"}, [4]),
        ({"reason": "subject_rejected", "route": "stock-levels"}, [1]),
        ({"reason": "malformed_json", "route": "stock-levels"}, []),
        ({"since_seq": 4}, [4, 5, 6, 7, 8]),
        ({"since_seq": 2, "limit": 2}, [2, 3]),
        ({"reason": "subject_rejected", "since_seq": 2}, [4]),
        ({"reason": "no_such_reason"}, []),
        ({"limit": 0}, []),
    ],
)
async def test_ls_filters(nc: NATS, kwargs: dict[str, object], expected: list[int]) -> None:
    await setup(nc)
    assert seqs(await list_dead_letters(nc.jetstream(), STREAM, **kwargs)) == expected  # type: ignore[arg-type]


async def test_dead_letter_fields_come_from_the_headers(nc: NATS) -> None:
    await setup(nc)
    first, _, _, _, dup = (await list_dead_letters(nc.jetstream(), STREAM))[:5]
    assert first.seq == 1
    assert first.reason == "subject_rejected"
    assert first.detail == 'location_id = "a.b" is not a safe subject token'
    assert first.route == "stock-levels"
    assert first.source == "odoo-stock-quant"
    assert first.subject == "odoo.stock_quant"
    assert first.attempt == 1
    assert first.config_version == "3f2a9c1d"
    assert first.time == "2026-11-27T09:00:00.5Z"
    assert first.payload == QUANT and first.size == len(QUANT)
    assert first.stored_subject == "millstream.dlq.subject_rejected"
    # non-ASCII header values come back as text, not as MIME-encoded words
    assert dup.detail == 'duplicate key "value" — Maßabweichung Ø12'


async def test_a_reason_that_is_not_a_token_is_refused(nc: NATS) -> None:
    await setup(nc)
    with pytest.raises(DeadLetterError, match="not a reason code"):
        await list_dead_letters(nc.jetstream(), STREAM, reason="a.>")


async def test_show_pretty_prints_json_and_shows_everything_else_as_sent(nc: NATS) -> None:
    await setup(nc)
    js = nc.jetstream()
    text = format_dead_letter(await get_dead_letter(js, STREAM, 1))
    assert "reason:" in text and "subject_rejected" in text
    assert "route:          stock-levels" in text
    assert "attempt:        1" in text
    assert "config version: 3f2a9c1d" in text
    assert "payload (JSON," in text
    assert '  "location_id": "a.b",' in text  # indented: pretty-printed

    cut = format_dead_letter(await get_dead_letter(js, STREAM, 2))
    assert "not printable as JSON" in cut
    assert repr(CUT) in cut
    assert "route:          -" in cut  # rejected before routing

    # pretty-printing would hide the first "value": show the bytes
    dup = format_dead_letter(await get_dead_letter(js, STREAM, 5))
    assert repr(DUPKEY) in dup

    big = format_dead_letter(await get_dead_letter(js, STREAM, 6))
    assert "truncated: 4,000 of" in big and "--full or --json" in big
    assert len(big) < 5_000
    assert "truncated" not in format_dead_letter(
        await get_dead_letter(js, STREAM, 6), max_chars=None
    )


async def test_show_of_an_unknown_sequence_says_what_the_stream_holds(nc: NATS) -> None:
    await setup(nc)
    js = nc.jetstream()
    with pytest.raises(
        DeadLetterNotFound, match=r"no dead letter 99 in stream MILLSTREAM_DLQ .*1\.\.8"
    ):
        await get_dead_letter(js, STREAM, 99)
    with pytest.raises(DeadLetterNotFound, match="start at 1"):
        await get_dead_letter(js, STREAM, 0)
    with pytest.raises(DeadLetterError, match="no stream NOPE"):
        await get_dead_letter(js, "NOPE", 1)


async def test_replay_to_a_stream_subject_goes_through_jetstream(nc: NATS) -> None:
    await setup(nc)
    js = nc.jetstream()
    report = await replay(js, nc, STREAM, [3])
    [r] = report.results
    assert r.ok and r.via == "jetstream:ODOO_IN" and r.subject == "odoo.stock_move"
    assert r.stream_seq == 1 and not r.removed
    stored = await js.get_msg("ODOO_IN", seq=1)
    assert stored.subject == "odoo.stock_move"
    assert stored.data == MOVE
    assert stored.headers is not None and stored.headers["Millstream-Replay-Of"] == "3"
    # without --remove the dead letter stays
    assert (await get_dead_letter(js, STREAM, 3)).payload == MOVE


async def test_replay_to_a_core_subject_reaches_subscribers(nc: NATS) -> None:
    await setup(nc)
    got: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await got.put(msg)

    await nc.subscribe("mes.>", cb=on_msg)
    await nc.flush()
    report = await replay(nc.jetstream(), nc, STREAM, [2])
    [r] = report.results
    assert r.ok and r.via == "core" and r.stream_seq is None
    msg = await asyncio.wait_for(got.get(), 2)
    assert msg.subject == "mes.dus.press-07.telemetry"
    assert msg.data == CUT
    assert msg.headers == {"Millstream-Replay-Of": "2"}


async def test_replay_remove_deletes_only_what_was_replayed(nc: NATS) -> None:
    await setup(nc)
    js = nc.jetstream()
    report = await replay(js, nc, STREAM, [1, 3, 7, 42], remove=True)
    by_seq = {r.seq: r for r in report.results}
    assert by_seq[1].ok and by_seq[1].removed
    assert by_seq[3].ok and by_seq[3].removed
    assert not by_seq[7].ok and "no Millstream-Subject header" in (by_seq[7].error or "")
    assert not by_seq[42].ok and "no dead letter 42" in (by_seq[42].error or "")
    assert [r.seq for r in report.replayed] == [1, 3]
    assert seqs(await list_dead_letters(js, STREAM)) == [2, 4, 5, 6, 7, 8]
    with pytest.raises(DeadLetterNotFound):
        await get_dead_letter(js, STREAM, 1)
    assert (await js.stream_info("ODOO_IN")).state.messages == 2


async def test_replay_by_filter_and_what_it_refuses(nc: NATS) -> None:
    await setup(nc)
    js = nc.jetstream()
    report = await replay(js, nc, STREAM, DeadLetterFilter(reason="subject_rejected"))
    assert [(r.seq, r.via) for r in report.results] == [(1, "jetstream:ODOO_IN"), (4, "core")]
    assert all(r.ok for r in report.results)

    looping = await replay(js, nc, STREAM, [8])
    assert not looping.results[0].ok
    assert "captured by the dead-letter stream itself" in (looping.results[0].error or "")


async def test_replay_all_does_not_chase_its_own_tail(nc: NATS) -> None:
    """Dead letters that land in the stream while a replay runs (the same events rejected
    again) are left for the next replay."""
    await setup(nc)
    js = nc.jetstream()

    async def reject_again(msg: Msg) -> None:
        await js.publish(
            "millstream.dlq.subject_rejected",
            msg.data,
            headers={"Millstream-Reason": "subject_rejected", "Millstream-Subject": msg.subject},
        )

    await nc.subscribe("mes.>", cb=reject_again)
    await nc.flush()
    report = await asyncio.wait_for(replay(js, nc, STREAM, DeadLetterFilter()), 10)
    assert [r.seq for r in report.results] == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_dry_run_publishes_nothing(nc: NATS) -> None:
    await setup(nc)
    js = nc.jetstream()
    report = await replay(js, nc, STREAM, DeadLetterFilter(), remove=True, dry_run=True)
    assert [r.via for r in report.replayed] == [
        "jetstream:ODOO_IN",
        "core",
        "jetstream:ODOO_IN",
        "core",
        "core",
        "jetstream:ODOO_IN",
    ]
    assert (await js.stream_info("ODOO_IN")).state.messages == 0
    assert (await js.stream_info(STREAM)).state.messages == len(LETTERS)


# --- the command line ----------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="millstream dlq")
    dlq.add_arguments(parser)
    return parser.parse_args(argv)


async def run_cli(*argv: str) -> int:
    # main() runs its own event loop, as it does under `millstream dlq`
    return await asyncio.to_thread(dlq.main, parse(*argv))


async def test_cli_ls_show_replay(
    nc: NATS, nats_server: EmbeddedNats, capsys: pytest.CaptureFixture[str]
) -> None:
    await setup(nc)
    url = ("--nats-url", nats_server.url)

    assert await run_cli("ls", *url, "--reason", "subject_rejected") == 0
    out = capsys.readouterr().out
    assert "dead letters in MILLSTREAM_DLQ" in out
    assert "stock-levels" in out and "telemetry-history" in out
    assert "malformed_json" not in out
    assert "2 shown; the stream holds 8" in out

    assert await run_cli("ls", *url, "--limit", "3") == 0
    assert "more may follow: --since 4" in capsys.readouterr().out

    assert await run_cli("ls", *url, "--json", "--since", "6") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["seq"] for d in lines] == [6, 7, 8]
    assert lines[1]["payload_base64"] and "payload" not in lines[1]
    assert json.loads(lines[0]["payload"])["_model"] == "stock.picking"

    assert await run_cli("show", *url, "1") == 0
    out = capsys.readouterr().out
    assert out.startswith("seq:")
    assert "odoo.stock_quant" in out and '"location_id": "a.b"' in out

    assert await run_cli("show", *url, "6", "--full") == 0
    assert "truncated" not in capsys.readouterr().out

    assert await run_cli("show", *url, "2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "malformed_json"

    with pytest.raises(DeadLetterNotFound, match="no dead letter 77"):
        await run_cli("show", *url, "77")

    assert await run_cli("replay", *url, "--reason", "unknown_unit", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would replay 3 -> odoo.stock_move (jetstream:ODOO_IN)" in out
    assert (await nc.jetstream().stream_info("ODOO_IN")).state.messages == 0

    assert await run_cli("replay", *url, "3", "--remove") == 0
    out = capsys.readouterr().out
    assert "replayed 3 -> odoo.stock_move (jetstream:ODOO_IN seq 1), removed" in out
    assert "replayed 1, failed 0, removed 1" in out

    # a failure in a replay shows in the exit code
    assert await run_cli("replay", *url, "7", "--json") == 1
    [result] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["ok"] is False and "Millstream-Subject" in result["error"]

    with pytest.raises(DeadLetterError, match="exactly one of"):
        await run_cli("replay", *url)
    with pytest.raises(DeadLetterError, match="exactly one of"):
        await run_cli("replay", *url, "1", "--all")


async def test_cli_reads_stream_prefix_and_url_from_the_config(
    nc: NATS, nats_server: EmbeddedNats, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    js = nc.jetstream()
    await js.add_stream(name="OPS_DEAD", subjects=["ops.dead.>"])
    await js.publish(
        "ops.dead.schema_violation",
        b"{}",
        headers={"Millstream-Reason": "schema_violation", "Millstream-Subject": "odoo.x"},
    )
    config = tmp_path / "router.yaml"
    config.write_text(
        MINI
        + f"nats: {{url: '{nats_server.url}'}}\n"
        + "dead_letter: {stream: OPS_DEAD, subject_prefix: ops.dead}\n"
    )
    assert await run_cli("ls", "--config", str(config), "--reason", "schema_violation") == 0
    assert "dead letters in OPS_DEAD" in capsys.readouterr().out


async def test_cli_without_a_server_says_why(
    monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    with pytest.raises(DeadLetterError, match="pass --nats-url"):
        await run_cli("ls")
    with pytest.raises(DeadLetterError, match=r"cannot connect to NATS at nats://127\.0\.0\.1:1"):
        await asyncio.wait_for(run_cli("ls", "--nats-url", "nats://127.0.0.1:1"), 10)
    # a server without the stream
    with pytest.raises(DeadLetterError, match="no stream MILLSTREAM_DLQ"):
        await run_cli("ls", "--nats-url", nats_server.url)
