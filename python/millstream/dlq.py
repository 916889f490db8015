"""`millstream dlq ls|show|replay`: inspect and replay dead letters.

Dead letters live in a JetStream stream (config `dead_letter.stream`, default MILLSTREAM_DLQ)
on subjects `{dead_letter.subject_prefix}.<reason>` (default `millstream.dlq.<reason>`). The
body is the original payload, unchanged; the headers say why and where it came from:

    Millstream-Reason          reason code (`subject_rejected`, `malformed_json`, ...)
    Millstream-Detail          what exactly was wrong
    Millstream-Route           the route that rejected it (absent before routing)
    Millstream-Source          the source it arrived through (absent when none matched)
    Millstream-Subject         the subject it arrived on: where a replay publishes it again
    Millstream-Config-Version  the plan that rejected it
    Millstream-Attempt         delivery count
    Millstream-Time            when (RFC 3339)

Everything here reads the stream message by message with the JetStream "get message" API
(`next_by_subj`, so the server does the reason filtering), which leaves no consumer behind.
A replay republishes the payload to its original subject with `Millstream-Replay-Of: <seq>`:
through JetStream (PubAck awaited) when a stream captures that subject, else on core NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg, StreamInfo
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.table import Table

from millstream.errors import MillstreamError

log = logging.getLogger(__name__)

DEFAULT_STREAM = "MILLSTREAM_DLQ"
DEFAULT_PREFIX = "millstream.dlq"

H_REASON = "Millstream-Reason"
H_DETAIL = "Millstream-Detail"
H_ROUTE = "Millstream-Route"
H_SOURCE = "Millstream-Source"
H_SUBJECT = "Millstream-Subject"
H_CONFIG_VERSION = "Millstream-Config-Version"
H_ATTEMPT = "Millstream-Attempt"
H_TIME = "Millstream-Time"
H_REPLAY_OF = "Millstream-Replay-Of"
_KNOWN_HEADERS = {
    h.lower()
    for h in (
        H_REASON,
        H_DETAIL,
        H_ROUTE,
        H_SOURCE,
        H_SUBJECT,
        H_CONFIG_VERSION,
        H_ATTEMPT,
        H_TIME,
    )
}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_SHOW_MAX_CHARS = 4_000


class DeadLetterError(MillstreamError):
    """A dead-letter operation cannot go ahead: no server, no stream, no such message."""


class DeadLetterNotFound(DeadLetterError):
    """No message with that sequence in the dead-letter stream."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter stream."""

    seq: int
    time: str
    """`Millstream-Time`, else when the stream stored it (RFC 3339)."""
    reason: str | None
    detail: str | None
    route: str | None
    source: str | None
    subject: str | None
    """The subject the event arrived on (`Millstream-Subject`): where a replay goes."""
    attempt: int | None
    config_version: str | None
    size: int
    payload: bytes
    stored_subject: str = ""
    """The dead-letter subject, `{prefix}.{reason}`."""
    headers: dict[str, str] = field(default_factory=dict)
    """Every header as stored, the Millstream ones included."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the payload as text when it is UTF-8, else base64."""
        doc: dict[str, Any] = {
            "seq": self.seq,
            "time": self.time,
            "reason": self.reason,
            "detail": self.detail,
            "route": self.route,
            "source": self.source,
            "subject": self.subject,
            "attempt": self.attempt,
            "config_version": self.config_version,
            "size": self.size,
            "stored_subject": self.stored_subject,
            "headers": self.headers,
        }
        try:
            doc["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            doc["payload_base64"] = base64.b64encode(self.payload).decode("ascii")
        return doc


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a replay takes: all of them, or those with a reason and/or route,
    from a sequence on."""

    reason: str | None = None
    route: str | None = None
    since_seq: int | None = None


# --- reading -----------------------------------------------------------------------------


def _parse_headers(raw: RawStreamMsg) -> dict[str, str]:
    # nats-py hands back email.header.Header objects for non-ASCII values, so read the raw
    # NATS/1.0 header block the API returned instead (UTF-8, one `Name: value` per line).
    if raw.hdrs:
        try:
            block = base64.b64decode(raw.hdrs).decode("utf-8", errors="replace")
        except ValueError:
            block = ""
        headers: dict[str, str] = {}
        for line in block.split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
        if headers:
            return headers
    return {str(k): str(v) for k, v in (raw.headers or {}).items()}


def _header(headers: dict[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    # The data plane percent-encodes header values (controls, `%`, `"` and non-ASCII), as
    # the CloudEvents NATS binding does, so a detail can never break the header block.
    return unquote(value) if value else None


def _dead_letter(raw: RawStreamMsg) -> DeadLetter:
    headers = _parse_headers(raw)
    payload = raw.data or b""
    attempt = _header(headers, H_ATTEMPT)
    stored = raw.time.isoformat().replace("+00:00", "Z") if raw.time is not None else ""
    return DeadLetter(
        seq=int(raw.seq or 0),
        time=_header(headers, H_TIME) or stored,
        reason=_header(headers, H_REASON),
        detail=_header(headers, H_DETAIL),
        route=_header(headers, H_ROUTE),
        source=_header(headers, H_SOURCE),
        subject=_header(headers, H_SUBJECT),
        attempt=int(attempt) if attempt is not None and attempt.isdigit() else None,
        config_version=_header(headers, H_CONFIG_VERSION),
        size=len(payload),
        payload=payload,
        stored_subject=raw.subject or "",
        headers=headers,
    )


async def _stream_info(js: JetStreamContext, stream: str) -> StreamInfo:
    try:
        return await js.stream_info(stream)
    except NotFoundError:
        raise DeadLetterError(
            f"no stream {stream} on this server: the router creates it when it starts; check "
            "dead_letter.stream in the config and that --nats-url is the router's server"
        ) from None


def _filter_subject(prefix: str, reason: str | None) -> str:
    if reason is None:
        return f"{prefix}.>"
    if not _TOKEN.match(reason):
        raise DeadLetterError(f"reason {reason!r} is not a reason code ([A-Za-z0-9_-])")
    return f"{prefix}.{reason}"


async def get_dead_letter(js: JetStreamContext, stream: str, seq: int) -> DeadLetter:
    """The message with sequence `seq`; `DeadLetterNotFound` when there is none."""
    if seq < 1:
        raise DeadLetterNotFound(f"sequence numbers start at 1, not {seq}")
    try:
        raw = await js.get_msg(stream, seq=seq)
    except NotFoundError:
        info = await _stream_info(js, stream)
        st = info.state
        held = (
            f"it holds {st.messages} message(s), sequences {st.first_seq}..{st.last_seq}"
            if st.messages
            else "it is empty"
        )
        raise DeadLetterNotFound(
            f"no dead letter {seq} in stream {stream} ({held}; a sequence inside that range "
            "was deleted, by a replay --remove or by hand)"
        ) from None
    return _dead_letter(raw)


async def iter_dead_letters(
    js: JetStreamContext,
    stream: str,
    *,
    subject_prefix: str = DEFAULT_PREFIX,
    reason: str | None = None,
    route: str | None = None,
    since_seq: int | None = None,
) -> AsyncIterator[DeadLetter]:
    """Dead letters in sequence order, up to the stream's last message when iteration
    started: what a replay adds to the stream meanwhile (an event dead-lettered again) is
    not read, so a replay of "everything" cannot chase its own tail."""
    subject = _filter_subject(subject_prefix, reason)
    info = await _stream_info(js, stream)
    last = info.state.last_seq
    seq = max(since_seq or 1, info.state.first_seq, 1)
    while seq <= last:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return
        if raw.seq is None or raw.seq > last:
            return
        seq = raw.seq + 1
        dl = _dead_letter(raw)
        if route is not None and dl.route != route:
            continue
        yield dl


async def list_dead_letters(
    js: JetStreamContext,
    stream: str,
    *,
    reason: str | None = None,
    route: str | None = None,
    since_seq: int | None = None,
    limit: int = 50,
    subject_prefix: str = DEFAULT_PREFIX,
) -> list[DeadLetter]:
    """Up to `limit` dead letters, oldest first, from `since_seq` on."""
    out: list[DeadLetter] = []
    if limit <= 0:
        return out
    async for dl in iter_dead_letters(
        js,
        stream,
        subject_prefix=subject_prefix,
        reason=reason,
        route=route,
        since_seq=since_seq,
    ):
        out.append(dl)
        if len(out) >= limit:
            break
    return out


class _NotPrintableJson(ValueError):
    pass


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _NotPrintableJson("duplicate key")
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise _NotPrintableJson(name)


def format_payload(payload: bytes, *, max_chars: int | None = _SHOW_MAX_CHARS) -> str:
    """The payload pretty-printed when it is JSON, else the `repr` of its bytes; cut at
    `max_chars` with a note. JSON that pretty-printing would misrepresent (duplicate keys,
    of which only the last survives; NaN/Infinity) is shown as bytes, as it was sent."""
    try:
        doc = json.loads(payload, object_pairs_hook=_strict_pairs, parse_constant=_reject_constant)
    except ValueError:  # includes UnicodeDecodeError and _NotPrintableJson
        head = f"payload ({len(payload):,} bytes, not printable as JSON):"
        text = repr(payload)
    else:
        head = f"payload (JSON, {len(payload):,} bytes):"
        text = json.dumps(doc, indent=2, ensure_ascii=False)
    if max_chars is not None and len(text) > max_chars:
        text = (
            text[:max_chars] + f"\n... truncated: {max_chars:,} of {len(text):,} characters shown "
            "(--full or --json for all of it)"
        )
    return f"{head}\n{text}"


def format_dead_letter(dl: DeadLetter, *, max_chars: int | None = _SHOW_MAX_CHARS) -> str:
    """`millstream dlq show`: the headers, then the payload."""
    rows = [
        ("seq", str(dl.seq)),
        ("time", dl.time),
        ("reason", dl.reason),
        ("detail", dl.detail),
        ("route", dl.route),
        ("source", dl.source),
        ("subject", dl.subject),
        ("attempt", None if dl.attempt is None else str(dl.attempt)),
        ("config version", dl.config_version),
        ("stored on", dl.stored_subject),
    ]
    rows += [(k, v) for k, v in dl.headers.items() if k.lower() not in _KNOWN_HEADERS]
    width = max(len(k) for k, _ in rows) + 1
    lines = [f"{k + ':':<{width}} {v if v is not None else '-'}" for k, v in rows]
    return "\n".join(lines) + "\n\n" + format_payload(dl.payload, max_chars=max_chars)


# --- replay ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayResult:
    seq: int
    subject: str | None
    via: str | None
    """`jetstream:<stream>` or `core`; None when the target could not be decided."""
    ok: bool
    error: str | None = None
    """Why the replay failed."""
    stream_seq: int | None = None
    """Sequence of the republished message in the capturing stream (JetStream)."""
    removed: bool = False
    remove_error: str | None = None
    """The replay worked but deleting the dead letter did not."""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "subject": self.subject,
            "via": self.via,
            "ok": self.ok,
            "error": self.error,
            "stream_seq": self.stream_seq,
            "removed": self.removed,
            "remove_error": self.remove_error,
        }


@dataclass
class ReplayReport:
    dry_run: bool = False
    results: list[ReplayResult] = field(default_factory=list)

    @property
    def replayed(self) -> list[ReplayResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[ReplayResult]:
        return [r for r in self.results if not r.ok]

    @property
    def removed(self) -> list[ReplayResult]:
        return [r for r in self.results if r.removed]


def _publishable(subject: str) -> bool:
    return all(
        tok and tok not in ("*", ">") and not any(c.isspace() for c in tok)
        for tok in subject.split(".")
    )


async def replay(
    js: JetStreamContext,
    nc: NATS,
    stream: str,
    selection: Sequence[int] | DeadLetterFilter,
    *,
    subject_prefix: str = DEFAULT_PREFIX,
    remove: bool = False,
    dry_run: bool = False,
    timeout: float = 5.0,
) -> ReplayReport:
    """Republish dead letters to their original subjects, in sequence order.

    `selection` is a list of sequences or a `DeadLetterFilter`. Each payload goes to its
    `Millstream-Subject` with `Millstream-Replay-Of: <seq>`: through JetStream, PubAck
    awaited, when a stream captures that subject (it must be the same stream when the ack
    comes back), else core NATS and a flush (no subscriber means nobody gets it: core NATS
    does not keep messages). With `remove`, a dead letter is deleted once its republish
    succeeded; without it, replaying again publishes again. `dry_run` decides every target
    and publishes nothing. Failures are reported per message, not raised."""
    report = ReplayReport(dry_run=dry_run)
    await _stream_info(js, stream)
    captured_by: dict[str, str | None] = {}

    async def capture(subject: str) -> str | None:
        if subject not in captured_by:
            try:
                captured_by[subject] = await js.find_stream_name_by_subject(subject)
            except NotFoundError:
                captured_by[subject] = None
        return captured_by[subject]

    async def one(dl: DeadLetter) -> ReplayResult:
        target = dl.subject
        if not target:
            return ReplayResult(
                dl.seq, None, None, False, f"no {H_SUBJECT} header: the original subject is unknown"
            )
        if not _publishable(target):
            return ReplayResult(
                dl.seq, target, None, False, f"{target!r} is not a subject one can publish to"
            )
        try:
            captured = await capture(target)
        except nats.errors.Error as e:
            return ReplayResult(dl.seq, target, None, False, f"cannot look up streams: {e}")
        if captured == stream:
            return ReplayResult(
                dl.seq,
                target,
                f"jetstream:{captured}",
                False,
                "the original subject is captured by the dead-letter stream itself",
            )
        via = f"jetstream:{captured}" if captured else "core"
        if dry_run:
            return ReplayResult(dl.seq, target, via, True)
        headers = {H_REPLAY_OF: str(dl.seq)}
        stream_seq = None
        try:
            if captured:
                ack = await js.publish(
                    target, dl.payload, timeout=timeout, stream=captured, headers=headers
                )
                stream_seq = ack.seq
            else:
                await nc.publish(target, dl.payload, headers=headers)
                await nc.flush(timeout=max(1, math.ceil(timeout)))
        except nats.errors.Error as e:
            return ReplayResult(dl.seq, target, via, False, f"publish failed: {e}")
        if not remove:
            return ReplayResult(dl.seq, target, via, True, stream_seq=stream_seq)
        try:
            removed = await js.delete_msg(stream, dl.seq)
        except nats.errors.Error as e:
            return ReplayResult(
                dl.seq, target, via, True, stream_seq=stream_seq, remove_error=str(e)
            )
        return ReplayResult(dl.seq, target, via, True, stream_seq=stream_seq, removed=removed)

    if isinstance(selection, DeadLetterFilter):
        async for dl in iter_dead_letters(
            js,
            stream,
            subject_prefix=subject_prefix,
            reason=selection.reason,
            route=selection.route,
            since_seq=selection.since_seq,
        ):
            report.results.append(await one(dl))
    else:
        for seq in sorted(set(selection)):
            try:
                dl = await get_dead_letter(js, stream, seq)
            except DeadLetterNotFound as e:
                report.results.append(ReplayResult(seq, None, None, False, str(e)))
                continue
            report.results.append(await one(dl))
    return report


# --- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ls`, `show` and `replay` subcommands, for `millstream dlq`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="CONFIG",
        help="the router's config: dead_letter.stream, dead_letter.subject_prefix and nats.url "
        "come from it (defaults: MILLSTREAM_DLQ, millstream.dlq)",
    )
    common.add_argument(
        "--nats-url",
        metavar="URL",
        help="the NATS server holding the dead-letter stream (default: nats.url of --config, "
        "else $NATS_URL)",
    )
    sub = parser.add_subparsers(dest="dlq_command", required=True, metavar="{ls,show,replay}")

    ls = sub.add_parser("ls", parents=[common], help="list dead letters, oldest first")
    ls.add_argument("--reason", metavar="R", help="only this reason code")
    ls.add_argument("--route", metavar="R", help="only dead letters of this route")
    ls.add_argument("--since", metavar="SEQ", type=int, help="start at this sequence")
    ls.add_argument("--limit", metavar="N", type=int, default=50, help="at most N (default 50)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")

    show = sub.add_parser("show", parents=[common], help="headers and payload of one")
    show.add_argument("seq", metavar="SEQ", type=int)
    show.add_argument("--json", action="store_true", help="as one JSON object")
    show.add_argument("--full", action="store_true", help="do not truncate the payload")

    rp = sub.add_parser(
        "replay",
        parents=[common],
        help="republish to the original subject",
        description="Republish dead letters to their original subjects (header "
        "Millstream-Replay-Of: SEQ). Without --remove they stay in the stream, so replaying "
        "them again publishes them again.",
    )
    rp.add_argument("seqs", metavar="SEQ", type=int, nargs="*", help="these sequences")
    rp.add_argument("--reason", metavar="R", help="every dead letter with this reason")
    rp.add_argument("--route", metavar="R", help="every dead letter of this route")
    rp.add_argument("--all", action="store_true", help="every dead letter in the stream")
    rp.add_argument("--remove", action="store_true", help="delete each one once replayed")
    rp.add_argument(
        "--dry-run", action="store_true", help="say where each would go, publish nothing"
    )
    rp.add_argument("--json", action="store_true", help="one JSON object per line")


@dataclass(frozen=True)
class _Target:
    url: str
    stream: str
    prefix: str


def _target(args: argparse.Namespace) -> _Target:
    from millstream.config import DeadLetterConfig, load_config

    config = load_config(args.config) if getattr(args, "config", None) else None
    dead_letter = config.dead_letter if config is not None else DeadLetterConfig()
    url = (
        getattr(args, "nats_url", None)
        or (config.nats.url if config is not None else None)
        or os.environ.get("NATS_URL")
    )
    if not url:
        raise DeadLetterError(
            "no NATS server to read dead letters from: pass --nats-url URL (or a --config with "
            "nats.url, or set NATS_URL). `millstream dlq` works on a running server; a router "
            "started without nats.url runs an embedded one and logs its URL at startup"
        )
    return _Target(url=url, stream=dead_letter.stream, prefix=dead_letter.subject_prefix)


async def _connect(url: str) -> NATS:
    async def on_error(e: Exception) -> None:
        log.debug("nats: %s", e)

    async def on_event() -> None:
        return None

    try:
        return await nats.connect(
            url,
            connect_timeout=3,
            allow_reconnect=False,
            # nats-py retries a refused connection forever unless this is positive
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=on_error,
            disconnected_cb=on_event,
            reconnected_cb=on_event,
            closed_cb=on_event,
        )
    except (nats.errors.Error, OSError, TimeoutError) as e:
        raise DeadLetterError(
            f"cannot connect to NATS at {url}: {e or type(e).__name__}. `millstream dlq` needs "
            "the running server that holds the dead-letter stream"
        ) from None


def _console() -> Console:
    out = Console()
    # piped or logged: no terminal width to respect, so do not squeeze the table
    return out if out.is_terminal else Console(width=200)


def _print_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")


async def _ls(args: argparse.Namespace, js: JetStreamContext, t: _Target) -> int:
    letters = await list_dead_letters(
        js,
        t.stream,
        reason=args.reason,
        route=args.route,
        since_seq=args.since,
        limit=args.limit,
        subject_prefix=t.prefix,
    )
    if args.json:
        for dl in letters:
            _print_json(dl.to_json())
        return 0
    table = Table(title=f"dead letters in {t.stream}", title_justify="left")
    for col in ("seq", "time", "reason", "route", "source", "subject", "attempt", "size"):
        table.add_column(col, justify="right" if col in ("seq", "attempt", "size") else "left")
    table.add_column("detail", overflow="fold", max_width=60)
    for dl in letters:
        table.add_row(
            str(dl.seq),
            dl.time,
            dl.reason or "-",
            dl.route or "-",
            dl.source or "-",
            dl.subject or "-",
            "-" if dl.attempt is None else str(dl.attempt),
            f"{dl.size:,}",
            dl.detail or "",
        )
    out = _console()
    out.print(table)
    info = await _stream_info(js, t.stream)
    note = f"{len(letters)} shown; the stream holds {info.state.messages:,}"
    if letters and len(letters) >= args.limit:
        note += f"; more may follow: --since {letters[-1].seq + 1}"
    out.print(note, highlight=False)
    return 0


async def _show(args: argparse.Namespace, js: JetStreamContext, t: _Target) -> int:
    dl = await get_dead_letter(js, t.stream, args.seq)
    if args.json:
        _print_json(dl.to_json())
    else:
        sys.stdout.write(format_dead_letter(dl, max_chars=None if args.full else _SHOW_MAX_CHARS))
        sys.stdout.write("\n")
    return 0


async def _replay(args: argparse.Namespace, js: JetStreamContext, nc: NATS, t: _Target) -> int:
    by_filter = args.reason is not None or args.route is not None
    if sum((bool(args.seqs), by_filter, bool(args.all))) != 1:
        raise DeadLetterError("replay needs exactly one of: SEQ..., --reason/--route, --all")
    selection: Sequence[int] | DeadLetterFilter = (
        args.seqs if args.seqs else DeadLetterFilter(reason=args.reason, route=args.route)
    )
    report = await replay(
        js,
        nc,
        t.stream,
        selection,
        subject_prefix=t.prefix,
        remove=args.remove,
        dry_run=args.dry_run,
    )
    for r in report.results:
        if args.json:
            _print_json(r.to_json())
        elif not r.ok:
            print(f"failed  {r.seq}: {r.error}")
        else:
            where = f"{r.via}" + (f" seq {r.stream_seq}" if r.stream_seq is not None else "")
            verb = "would replay" if report.dry_run else "replayed"
            extra = ", removed" if r.removed else ""
            if r.remove_error:
                extra = f", NOT removed: {r.remove_error}"
            print(f"{verb} {r.seq} -> {r.subject} ({where}){extra}")
    if not args.json:
        verb = "would replay" if report.dry_run else "replayed"
        print(
            f"{verb} {len(report.replayed)}, failed {len(report.failed)}"
            + (f", removed {len(report.removed)}" if args.remove and not args.dry_run else "")
        )
    failed_removal = any(r.remove_error for r in report.results)
    return 1 if report.failed or failed_removal else 0


async def _run(args: argparse.Namespace, t: _Target) -> int:
    nc = await _connect(t.url)
    try:
        js = nc.jetstream()
        try:
            if args.dlq_command == "ls":
                return await _ls(args, js, t)
            if args.dlq_command == "show":
                return await _show(args, js, t)
            if args.dlq_command == "replay":
                return await _replay(args, js, nc, t)
        except nats.errors.Error as e:
            raise DeadLetterError(f"{t.url}: {e}") from None
        raise DeadLetterError(f"unknown dlq command {args.dlq_command!r}")
    finally:
        await nc.close()


def main(args: argparse.Namespace) -> int:
    """Run `millstream dlq <command>` from parsed arguments: 0 when all went well, 1 when a
    replay failed for some messages. Raises `DeadLetterError` (a `MillstreamError`) for
    anything that stops the command as a whole."""
    return asyncio.run(_run(args, _target(args)))
