"""Events emitted by :class:`ingest.rtmp.connection.RTMPServerConnection`.

Each event is a plain frozen dataclass; names are in the past tense. The connection decides
nothing about authorization: it reports what the peer asked for and its user answers through
the connection's ``accept_*``/``reject_*`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base class of every RTMP event."""


@dataclass(frozen=True)
class HandshakeCompleted(Event):
    """The C0/C1/C2 handshake finished; chunked messages follow."""


@dataclass(frozen=True)
class ConnectRequested(Event):
    """The peer sent ``connect``; answer with ``accept_connect`` or ``reject_connect``."""

    transaction_id: float
    """Transaction id to echo in ``_result``/``_error``."""
    app: str
    """The application name (path segment before the stream key), e.g. ``live``."""
    tc_url: str | None
    """``tcUrl`` as sent by the client, if any."""
    properties: dict[str, Any] = field(default_factory=dict)
    """The whole AMF0 command object (flashVer, fourCcList, ...)."""


@dataclass(frozen=True)
class StreamCreated(Event):
    """The peer sent ``createStream`` and the connection answered with ``stream_id``."""

    stream_id: int
    """The new message stream id."""


@dataclass(frozen=True)
class PublishRequested(Event):
    """The peer sent ``publish``; answer with ``accept_publish`` or ``reject_publish``."""

    stream_id: int
    """Message stream id the publish was sent on (answers go on the same id)."""
    transaction_id: float
    """Transaction id of the command."""
    name: str
    """Publishing name (the stream key), without any ``?query``."""
    publish_type: str
    """``live``, ``record`` or ``append``."""
    query: str = ""
    """Anything after ``?`` in the publishing name."""


@dataclass(frozen=True)
class PlayRequested(Event):
    """The peer sent ``play``; liverelay does not serve RTMP playback and rejects it."""

    stream_id: int
    """Message stream id of the command."""
    name: str
    """Requested stream name."""


@dataclass(frozen=True)
class UnpublishRequested(Event):
    """The peer ended its publish deliberately (``FCUnpublish``, ``closeStream`` or
    ``deleteStream``): a clean stop, not a dropped connection."""

    stream_id: int
    """Message stream id concerned (0 when the command did not say)."""
    command: str
    """The command that ended it."""


@dataclass(frozen=True)
class MetadataReceived(Event):
    """``@setDataFrame``/``onMetaData`` data message."""

    stream_id: int
    """Message stream id."""
    metadata: dict[str, Any]
    """The decoded metadata object (ECMA array or object)."""
    payload: bytes
    """The AMF0 body to store as an FLV script tag: ``onMetaData`` + the object, i.e. the message
    with any leading ``@setDataFrame`` string removed."""


@dataclass(frozen=True)
class MediaReceived(Event):
    """One audio or video message, passed through byte for byte."""

    stream_id: int
    """Message stream id."""
    kind: int
    """RTMP message type id: 8 = audio, 9 = video."""
    timestamp: int
    """Absolute timestamp in milliseconds (RTMP 5.3.1.2), already made absolute from deltas
    and extended timestamps, modulo 2**32."""
    payload: bytes | memoryview
    """The message body exactly as received (FLV tag data)."""


@dataclass(frozen=True)
class CommandReceived(Event):
    """Any other AMF0 command the connection does not handle itself."""

    stream_id: int
    """Message stream id."""
    name: str
    """Command name."""
    transaction_id: float
    """Transaction id."""
    arguments: list[Any]
    """Command object and further arguments."""


@dataclass(frozen=True)
class AcknowledgementReceived(Event):
    """The peer acknowledged ``sequence_number`` bytes received from us."""

    sequence_number: int
    """Bytes the peer says it has received."""
