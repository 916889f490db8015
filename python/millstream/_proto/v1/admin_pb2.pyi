import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("stats", "config_version")
    STATS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    stats: _struct_pb2.Struct
    config_version: str
    def __init__(self, stats: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., config_version: _Optional[str] = ...) -> None: ...

class ListRoutesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Route(_message.Message):
    __slots__ = ("name", "subjects", "canonical_types", "when", "lane", "delivery", "to", "dedup_key", "dedup_window_ms", "stale_key", "stale_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_TYPES_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    DEDUP_KEY_FIELD_NUMBER: _ClassVar[int]
    DEDUP_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    STALE_KEY_FIELD_NUMBER: _ClassVar[int]
    STALE_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    subjects: _containers.RepeatedScalarFieldContainer[str]
    canonical_types: _containers.RepeatedScalarFieldContainer[str]
    when: str
    lane: str
    delivery: str
    to: str
    dedup_key: str
    dedup_window_ms: int
    stale_key: str
    stale_version: str
    def __init__(self, name: _Optional[str] = ..., subjects: _Optional[_Iterable[str]] = ..., canonical_types: _Optional[_Iterable[str]] = ..., when: _Optional[str] = ..., lane: _Optional[str] = ..., delivery: _Optional[str] = ..., to: _Optional[str] = ..., dedup_key: _Optional[str] = ..., dedup_window_ms: _Optional[int] = ..., stale_key: _Optional[str] = ..., stale_version: _Optional[str] = ...) -> None: ...

class ListRoutesResponse(_message.Message):
    __slots__ = ("routes", "config_version")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    config_version: str
    def __init__(self, routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., config_version: _Optional[str] = ...) -> None: ...

class CheckConfigRequest(_message.Message):
    __slots__ = ("yaml",)
    YAML_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    def __init__(self, yaml: _Optional[str] = ...) -> None: ...

class ConfigError(_message.Message):
    __slots__ = ("location", "message")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    location: str
    message: str
    def __init__(self, location: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CheckConfigResponse(_message.Message):
    __slots__ = ("ok", "errors", "config_version")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    errors: _containers.RepeatedCompositeFieldContainer[ConfigError]
    config_version: str
    def __init__(self, ok: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[ConfigError, _Mapping]]] = ..., config_version: _Optional[str] = ...) -> None: ...

class ReloadConfigRequest(_message.Message):
    __slots__ = ("yaml",)
    YAML_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    def __init__(self, yaml: _Optional[str] = ...) -> None: ...

class ReloadConfigResponse(_message.Message):
    __slots__ = ("previous_version", "config_version")
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    previous_version: str
    config_version: str
    def __init__(self, previous_version: _Optional[str] = ..., config_version: _Optional[str] = ...) -> None: ...

class DeadLetterSelector(_message.Message):
    __slots__ = ("reason", "route", "from_sequence")
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    route: str
    from_sequence: int
    def __init__(self, reason: _Optional[str] = ..., route: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("selector", "limit")
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    selector: DeadLetterSelector
    limit: int
    def __init__(self, selector: _Optional[_Union[DeadLetterSelector, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("sequence", "time", "reason", "detail", "route", "source", "subject", "attempt", "config_version", "payload")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    reason: str
    detail: str
    route: str
    source: str
    subject: str
    attempt: int
    config_version: str
    payload: bytes
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., route: _Optional[str] = ..., source: _Optional[str] = ..., subject: _Optional[str] = ..., attempt: _Optional[int] = ..., config_version: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("sequences", "selector", "remove", "dry_run")
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    sequences: Sequences
    selector: DeadLetterSelector
    remove: bool
    dry_run: bool
    def __init__(self, sequences: _Optional[_Union[Sequences, _Mapping]] = ..., selector: _Optional[_Union[DeadLetterSelector, _Mapping]] = ..., remove: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class Sequences(_message.Message):
    __slots__ = ("sequences",)
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class ReplayResult(_message.Message):
    __slots__ = ("sequence", "subject", "ok", "error", "removed")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    subject: str
    ok: bool
    error: str
    removed: bool
    def __init__(self, sequence: _Optional[int] = ..., subject: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., removed: _Optional[bool] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("results", "replayed", "failed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReplayResult]
    replayed: int
    failed: int
    def __init__(self, results: _Optional[_Iterable[_Union[ReplayResult, _Mapping]]] = ..., replayed: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...
