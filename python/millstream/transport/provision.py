"""JetStream provisioning (nats-py): the streams, durable consumers, dead-letter stream and
state bucket a config needs, created or brought up to date before the data plane starts.

Idempotent: what already matches is left alone (no write at all), what differs is updated in
place, keeping settings Millstream does not manage (replicas, placement, compression, ...) as
an operator set them. Anything that cannot be done raises `ProvisionError` naming the stream,
consumer or bucket and what to do about it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError

from millstream.config import Config, SourceConfig, format_duration, subject_covered
from millstream.errors import ProvisionError

# How long dead letters are kept: long enough to fix a mapping after a holiday and replay.
DEAD_LETTER_MAX_AGE_MS = 30 * 86_400_000
# Unacknowledged messages a source's consumer hands out before it waits for acks. Above
# every lane's default queue, so the lanes, not the consumer, decide when to push back.
MAX_ACK_PENDING = 20_000

_STREAM_NOT_FOUND = 10059
_CONSUMER_NOT_FOUND = 10014
_STREAM_NAME_IN_USE = 10058
_SUBJECTS_OVERLAP = 10065


@dataclasses.dataclass(frozen=True)
class _StreamWant:
    """The stream settings Millstream manages; everything else is left as found."""

    name: str
    subjects: list[str]
    storage: str
    max_age_ms: int  # 0 = unlimited, as JetStream says it
    max_bytes: int  # -1 = unlimited
    duplicate_window_ms: int
    description: str

    def differences(self, have: StreamConfig) -> list[str]:
        out = []
        if sorted(have.subjects or []) != sorted(self.subjects):
            out.append(f"subjects {', '.join(have.subjects or [])} -> {', '.join(self.subjects)}")
        if _ms(have.max_age) != self.max_age_ms:
            out.append(f"max_age {_age(_ms(have.max_age))} -> {_age(self.max_age_ms)}")
        if (have.max_bytes or -1) != self.max_bytes:
            out.append(f"max_bytes {have.max_bytes} -> {self.max_bytes}")
        if _ms(have.duplicate_window) != self.duplicate_window_ms:
            out.append(
                f"duplicate_window {format_duration(_ms(have.duplicate_window))} -> "
                f"{format_duration(self.duplicate_window_ms)}"
            )
        return out

    def config(self, base: StreamConfig | None = None) -> StreamConfig:
        fields: dict[str, Any] = {
            "name": self.name,
            "subjects": list(self.subjects),
            "max_age": self.max_age_ms / 1000,
            "max_bytes": self.max_bytes,
            "duplicate_window": self.duplicate_window_ms / 1000,
        }
        if base is not None:
            return dataclasses.replace(base, **fields)
        return StreamConfig(
            **fields,
            description=self.description,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType(self.storage),
        )

    def summary(self) -> str:
        parts = [", ".join(self.subjects), self.storage, f"max_age {_age(self.max_age_ms)}"]
        if self.max_bytes != -1:
            parts.append(f"max_bytes {self.max_bytes}")
        parts.append(f"duplicate_window {format_duration(self.duplicate_window_ms)}")
        return "; ".join(parts)


def _plain(value: object) -> str:
    """An enum's value or the string the server sent (nats-py returns either)."""
    return str(getattr(value, "value", value))


def _ms(seconds: float | None) -> int:
    return round((seconds or 0) * 1000)


def _age(ms: int) -> str:
    return format_duration(ms) if ms else "unlimited"


def _why(e: Exception) -> str:
    if isinstance(e, APIError):
        return f"{e.description} (JetStream error {e.err_code})"
    if isinstance(e, nats.errors.NoRespondersError):
        return "no JetStream API answered: is JetStream enabled on this server/account?"
    if isinstance(e, nats.errors.TimeoutError):
        return "the JetStream API did not answer in time"
    return str(e) or type(e).__name__


async def provision(js: JetStreamContext, config: Config) -> list[str]:
    """Create or update what `config` needs in JetStream; returns one line per object saying
    what was done (`created`, `updated ...`, `up to date`, `exists (managed elsewhere)`).

    In order: the declared streams (`manage: false` ones are only checked), the dead-letter
    stream, one durable pull consumer per JetStream source, the state object store bucket.
    """
    lines: list[str] = []
    for name, spec in config.streams.items():
        if spec.manage:
            want = _StreamWant(
                name=name,
                subjects=list(spec.subjects),
                storage=spec.storage,
                max_age_ms=spec.max_age or 0,
                max_bytes=spec.max_bytes if spec.max_bytes is not None else -1,
                duplicate_window_ms=spec.duplicate_window,
                description=f"Millstream {config.name}: declared in its config",
            )
            lines.append(await _ensure_stream(js, want))
        else:
            lines.append(await _check_stream(js, name, list(spec.subjects)))
    dlq = config.dead_letter
    lines.append(
        await _ensure_stream(
            js,
            _StreamWant(
                name=dlq.stream,
                subjects=dlq.subjects,
                storage="file",
                max_age_ms=DEAD_LETTER_MAX_AGE_MS,
                max_bytes=-1,
                duplicate_window_ms=120_000,
                description=f"Millstream {config.name}: dead letters, with reason headers",
            ),
        )
    )
    for src in config.sources:
        if src.jetstream is not None:
            lines.append(await _ensure_consumer(js, src))
    if config.state.enabled:
        lines.append(await _ensure_bucket(js, config.state.bucket, config.name))
    return lines


async def _stream_info(js: JetStreamContext, name: str) -> StreamConfig | None:
    try:
        info = await js.stream_info(name)
    except NotFoundError as e:
        if e.err_code in (None, _STREAM_NOT_FOUND):
            return None
        raise ProvisionError(f"stream {name}: {_why(e)}") from None
    except (nats.errors.Error, APIError) as e:
        raise ProvisionError(f"stream {name}: cannot read its settings: {_why(e)}") from None
    return info.config


async def _ensure_stream(js: JetStreamContext, want: _StreamWant) -> str:
    have = await _stream_info(js, want.name)
    if have is None:
        try:
            await js.add_stream(want.config())
        except (nats.errors.Error, APIError) as e:
            hint = ""
            if isinstance(e, APIError) and e.err_code == _SUBJECTS_OVERLAP:
                hint = await _overlap_hint(js, want.subjects)
            raise ProvisionError(f"stream {want.name}: cannot create it: {_why(e)}{hint}") from None
        return f"stream {want.name}: created ({want.summary()})"
    if have.storage is not None and _plain(have.storage) != want.storage:
        raise ProvisionError(
            f"stream {want.name}: it exists with {_plain(have.storage)} storage, the config "
            f"asks for {want.storage}; JetStream cannot change that in place (back it up and "
            "delete it, or set the config's storage to match)"
        )
    if have.retention is not None and _plain(have.retention) != RetentionPolicy.LIMITS.value:
        raise ProvisionError(
            f"stream {want.name}: it exists with {_plain(have.retention)} retention; Millstream "
            "needs limits retention (several consumers read it, and a replay reads it again). "
            "Declare it with 'manage: false' if that is intended"
        )
    diffs = want.differences(have)
    if not diffs:
        return f"stream {want.name}: up to date"
    try:
        await js.update_stream(want.config(base=have))
    except (nats.errors.Error, APIError) as e:
        hint = ""
        if isinstance(e, APIError) and e.err_code == _SUBJECTS_OVERLAP:
            hint = await _overlap_hint(js, want.subjects, skip=want.name)
        raise ProvisionError(
            f"stream {want.name}: cannot update it ({'; '.join(diffs)}): {_why(e)}{hint}"
        ) from None
    return f"stream {want.name}: updated {'; '.join(diffs)}"


async def _overlap_hint(js: JetStreamContext, subjects: list[str], skip: str = "") -> str:
    """Which existing stream holds the subjects JetStream says overlap."""
    for subject in subjects:
        try:
            other = await js.find_stream_name_by_subject(subject)
        except (nats.errors.Error, APIError):
            continue
        if other != skip:
            return (
                f"; stream {other} already stores {subject}: narrow one of them, or declare "
                f"{other} under 'streams:' with 'manage: false' and use it"
            )
    return ""


async def _check_stream(js: JetStreamContext, name: str, subjects: list[str]) -> str:
    have = await _stream_info(js, name)
    if have is None:
        raise ProvisionError(
            f"stream {name} does not exist; it is declared with 'manage: false', so Millstream "
            "expects it to be created elsewhere. Create it, or set 'manage: true' to let "
            "Millstream create it"
        )
    missing = [s for s in subjects if not any(subject_covered(s, c) for c in have.subjects or [])]
    if missing:
        raise ProvisionError(
            f"stream {name} exists but does not store {', '.join(missing)} (its subjects: "
            f"{', '.join(have.subjects or []) or 'none'}); widen it or fix 'streams.{name}'"
        )
    return f"stream {name}: exists (managed elsewhere)"


async def _ensure_consumer(js: JetStreamContext, src: SourceConfig) -> str:
    assert src.jetstream is not None and src.durable is not None
    stream, durable = src.jetstream.stream, src.durable
    what = f"consumer {stream}/{durable} (source {src.name})"
    # Millstream counts deliveries itself and dead-letters after `max_deliver` of them, so
    # the server must redeliver without limit: with a server-side limit the last failure
    # would vanish silently instead of becoming a dead letter.
    managed: dict[str, Any] = {
        "description": f"Millstream source {src.name}",
        "ack_wait": src.jetstream.ack_wait / 1000,
        "max_deliver": -1,
        "filter_subject": None,
        "filter_subjects": list(src.subjects),
        "max_ack_pending": MAX_ACK_PENDING,
    }
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError as e:
        if e.err_code not in (None, _CONSUMER_NOT_FOUND):
            raise ProvisionError(f"{what}: {_why(e)}") from None
        info = None
    except (nats.errors.Error, APIError) as e:
        raise ProvisionError(f"{what}: cannot read its settings: {_why(e)}") from None
    if info is None:
        cfg = ConsumerConfig(
            name=durable,
            durable_name=durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            **managed,
        )
        try:
            await js.add_consumer(stream, cfg)
        except (nats.errors.Error, APIError) as e:
            raise ProvisionError(f"{what}: cannot create it: {_why(e)}") from None
        return (
            f"{what}: created (pull, filter {', '.join(src.subjects)}, ack_wait "
            f"{format_duration(src.jetstream.ack_wait)})"
        )
    have = info.config
    if have.deliver_subject:
        raise ProvisionError(
            f"{what}: it exists as a push consumer; Millstream pulls. Delete it "
            f"(nats consumer rm {stream} {durable}) or give the source another 'durable'"
        )
    if _plain(have.ack_policy) != AckPolicy.EXPLICIT.value:
        raise ProvisionError(
            f"{what}: it exists with ack policy {_plain(have.ack_policy)}; Millstream acks "
            f"each event explicitly. Delete it (nats consumer rm {stream} {durable}) or give "
            "the source another 'durable'"
        )
    have_filters = list(have.filter_subjects or [])
    if have.filter_subject:
        have_filters.append(have.filter_subject)
    diffs = []
    if sorted(have_filters) != sorted(src.subjects):
        diffs.append(f"filter {', '.join(have_filters) or '(all)'} -> {', '.join(src.subjects)}")
    if _ms(have.ack_wait) != src.jetstream.ack_wait:
        diffs.append(
            f"ack_wait {format_duration(_ms(have.ack_wait))} -> "
            f"{format_duration(src.jetstream.ack_wait)}"
        )
    if have.max_deliver != -1:
        diffs.append(f"max_deliver {have.max_deliver} -> unlimited")
    if have.max_ack_pending != MAX_ACK_PENDING:
        diffs.append(f"max_ack_pending {have.max_ack_pending} -> {MAX_ACK_PENDING}")
    if have.description != managed["description"]:
        diffs.append("description")
    if not diffs:
        return f"{what}: up to date"
    # The delivery position and pending acks stay: this is an update, not a re-create.
    try:
        await js.add_consumer(stream, dataclasses.replace(have, name=durable, **managed))
    except (nats.errors.Error, APIError) as e:
        raise ProvisionError(
            f"{what}: cannot update it ({'; '.join(diffs)}): {_why(e)}. If JetStream cannot "
            f"change this in place, delete it (nats consumer rm {stream} {durable}); it is "
            "created again from the start of the stream"
        ) from None
    return f"{what}: updated {'; '.join(diffs)}"


async def _ensure_bucket(js: JetStreamContext, bucket: str, name: str) -> str:
    try:
        await js.object_store(bucket)
        return f"object store {bucket}: exists"
    except BucketNotFoundError:
        pass
    except (nats.errors.Error, APIError) as e:
        raise ProvisionError(f"object store {bucket}: {_why(e)}") from None
    try:
        await js.create_object_store(
            bucket,
            ObjectStoreConfig(
                description=f"Millstream {name}: dedup and stale-guard snapshots",
                storage=StorageType.FILE,
            ),
        )
    except APIError as e:
        # Another instance created it between our look and our create.
        if e.err_code == _STREAM_NAME_IN_USE:
            try:
                await js.object_store(bucket)
                return f"object store {bucket}: exists"
            except (nats.errors.Error, APIError):
                pass
        raise ProvisionError(f"object store {bucket}: cannot create it: {_why(e)}") from None
    except nats.errors.Error as e:
        raise ProvisionError(f"object store {bucket}: cannot create it: {_why(e)}") from None
    return f"object store {bucket}: created"
