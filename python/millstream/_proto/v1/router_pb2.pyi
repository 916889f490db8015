import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from millstream._proto.v1 import event_pb2 as _event_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SourceEvent(_message.Message):
    __slots__ = ("subject", "data")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    subject: str
    data: bytes
    def __init__(self, subject: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("events", "batch_id")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[SourceEvent]
    batch_id: int
    def __init__(self, events: _Optional[_Iterable[_Union[SourceEvent, _Mapping]]] = ..., batch_id: _Optional[int] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("batch_id", "verdicts")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, batch_id: _Optional[int] = ..., verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("status", "canonical_id", "canonical_type", "destinations", "skipped", "reason", "detail", "route")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Verdict.Status]
        ACCEPTED: _ClassVar[Verdict.Status]
        DUPLICATE: _ClassVar[Verdict.Status]
        STALE: _ClassVar[Verdict.Status]
        REJECTED: _ClassVar[Verdict.Status]
    STATUS_UNSPECIFIED: Verdict.Status
    ACCEPTED: Verdict.Status
    DUPLICATE: Verdict.Status
    STALE: Verdict.Status
    REJECTED: Verdict.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_ID_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    status: Verdict.Status
    canonical_id: str
    canonical_type: str
    destinations: _containers.RepeatedCompositeFieldContainer[Destination]
    skipped: _containers.RepeatedCompositeFieldContainer[Skipped]
    reason: str
    detail: str
    route: str
    def __init__(self, status: _Optional[_Union[Verdict.Status, str]] = ..., canonical_id: _Optional[str] = ..., canonical_type: _Optional[str] = ..., destinations: _Optional[_Iterable[_Union[Destination, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[Skipped, _Mapping]]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., route: _Optional[str] = ...) -> None: ...

class Destination(_message.Message):
    __slots__ = ("route", "subject")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    route: str
    subject: str
    def __init__(self, route: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class Skipped(_message.Message):
    __slots__ = ("route", "status", "detail")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    route: str
    status: str
    detail: str
    def __init__(self, route: _Optional[str] = ..., status: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("canonical_types", "routes", "subjects", "from_now", "from_sequence", "from_time", "from_beginning", "durable", "stream", "max_batch")
    CANONICAL_TYPES_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_BEGINNING_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    canonical_types: _containers.RepeatedScalarFieldContainer[str]
    routes: _containers.RepeatedScalarFieldContainer[str]
    subjects: _containers.RepeatedScalarFieldContainer[str]
    from_now: bool
    from_sequence: int
    from_time: _timestamp_pb2.Timestamp
    from_beginning: bool
    durable: str
    stream: str
    max_batch: int
    def __init__(self, canonical_types: _Optional[_Iterable[str]] = ..., routes: _Optional[_Iterable[str]] = ..., subjects: _Optional[_Iterable[str]] = ..., from_now: _Optional[bool] = ..., from_sequence: _Optional[int] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_beginning: _Optional[bool] = ..., durable: _Optional[str] = ..., stream: _Optional[str] = ..., max_batch: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[SubscribedEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[SubscribedEvent, _Mapping]]] = ...) -> None: ...

class SubscribedEvent(_message.Message):
    __slots__ = ("event", "sequence", "subject", "route")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    event: _event_pb2.CloudEvent
    sequence: int
    subject: str
    route: str
    def __init__(self, event: _Optional[_Union[_event_pb2.CloudEvent, _Mapping]] = ..., sequence: _Optional[int] = ..., subject: _Optional[str] = ..., route: _Optional[str] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("durable", "sequence")
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    durable: str
    sequence: int
    def __init__(self, durable: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("previous",)
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    previous: int
    def __init__(self, previous: _Optional[int] = ...) -> None: ...
