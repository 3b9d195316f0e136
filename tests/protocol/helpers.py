"""A test-only RTMP client side: builds the byte streams a publisher sends and reads ours.

Chunk headers are written by hand here (not with the server's ChunkWriter) so the tests can
produce every header type, chunk stream id size and extended timestamp layout a real client
(ffmpeg, OBS, GStreamer) may send. Replies are decoded with the server's own ChunkReader and
AMF0 decoder, which the other tests check independently.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.chunks import ChunkReader, RawMessage
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import ConnectRequested, Event, HandshakeCompleted, StreamCreated

EXTENDED = 0xFFFFFF
C1 = bytes(8) + bytes(i * 7 % 251 for i in range(1528))
C0C1 = b"\x03" + C1
C2 = bytes(range(256)) * 6

AUDIO, VIDEO, DATA, COMMAND = 8, 9, 18, 20


def basic_header(fmt: int, csid: int) -> bytes:
    """RTMP 5.3.1.1 basic header; picks the 1, 2 or 3 byte form from ``csid``."""
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def chunk_header(
    fmt: int,
    csid: int,
    *,
    timestamp: int = 0,
    length: int = 0,
    type_id: int = 0,
    stream_id: int = 0,
) -> bytes:
    """Basic header + message header (+ extended timestamp when ``timestamp`` needs it).

    ``timestamp`` is the absolute time for fmt 0, the delta for fmt 1/2, and for fmt 3 the
    value to repeat as an extended timestamp (only written when >= 0xFFFFFF).
    """
    extended = timestamp >= EXTENDED
    field = (EXTENDED if extended else timestamp).to_bytes(3, "big")
    out = basic_header(fmt, csid)
    if fmt == 0:
        out += field + length.to_bytes(3, "big") + bytes([type_id]) + struct.pack("<I", stream_id)
    elif fmt == 1:
        out += field + length.to_bytes(3, "big") + bytes([type_id])
    elif fmt == 2:
        out += field
    if extended:
        out += struct.pack(">I", timestamp)
    return out


def message_chunks(
    fmt: int,
    csid: int,
    payload: bytes,
    *,
    timestamp: int = 0,
    type_id: int = VIDEO,
    stream_id: int = 1,
    chunk_size: int = 128,
    length: int | None = None,
    repeat_extended: bool = True,
) -> bytes:
    """One message: a chunk with a type ``fmt`` header then type 3 continuation chunks, each
    repeating the extended timestamp when the header had one (RTMP 5.3.1.3) unless
    ``repeat_extended`` is false (as some old senders do)."""
    continuation = (
        chunk_header(3, csid, timestamp=timestamp) if repeat_extended else basic_header(3, csid)
    )
    header = continuation
    if fmt != 3:
        header = chunk_header(
            fmt,
            csid,
            timestamp=timestamp,
            length=len(payload) if length is None else length,
            type_id=type_id,
            stream_id=stream_id,
        )
    pieces = [header, payload[:chunk_size]]
    for offset in range(chunk_size, len(payload), chunk_size):
        pieces += (continuation, payload[offset : offset + chunk_size])
    return b"".join(pieces)


def command(
    name: str, transaction_id: float, *args: Any, stream_id: int = 0, csid: int = 3
) -> bytes:
    """An AMF0 command message (type 20) in one fmt 0 chunk stream, 128-byte chunks."""
    body = amf0.encode(name, transaction_id, *args)
    return message_chunks(0, csid, body, type_id=COMMAND, stream_id=stream_id)


def control(type_id: int, body: bytes) -> bytes:
    """A protocol control message on chunk stream 2, message stream 0."""
    return message_chunks(0, 2, body, type_id=type_id, stream_id=0)


def set_chunk_size(size: int) -> bytes:
    """RTMP 5.4.1 Set Chunk Size."""
    return control(1, struct.pack(">I", size))


def window_ack_size(size: int) -> bytes:
    """RTMP 5.4.4 Window Acknowledgement Size."""
    return control(5, struct.pack(">I", size))


def connect_command(app: str = "live", transaction_id: float = 1.0, **extra: Any) -> bytes:
    """The ``connect`` an ffmpeg publisher sends."""
    command_object = {
        "app": app,
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; Lavf61.7.100)",
        "tcUrl": f"rtmp://127.0.0.1:1935/{app}",
        **extra,
    }
    return command("connect", transaction_id, command_object)


def publish_bytes(key: str, app: str = "live") -> bytes:
    """Handshake, connect, createStream and publish, as one write."""
    return (
        C0C1
        + C2
        + connect_command(app)
        + command("createStream", 2.0, None)
        + command("publish", 3.0, None, key, "live", stream_id=1, csid=8)
    )


def handshaken(**limits: Any) -> RTMPServerConnection:
    """A server connection that has completed the handshake (its output drained)."""
    conn = RTMPServerConnection(**limits)
    events = conn.receive_data(C0C1 + C2)
    assert events == [HandshakeCompleted()]
    conn.data_to_send()
    return conn


def connected(**limits: Any) -> RTMPServerConnection:
    """A server connection whose ``connect`` was accepted (its output drained)."""
    conn = handshaken(**limits)
    [connect] = conn.receive_data(connect_command())
    assert isinstance(connect, ConnectRequested)
    conn.accept_connect(connect.transaction_id)
    conn.data_to_send()
    return conn


def stream_created(**limits: Any) -> RTMPServerConnection:
    """A connected server connection that answered ``createStream`` with message stream 1."""
    conn = connected(**limits)
    assert conn.receive_data(command("createStream", 2.0, None)) == [StreamCreated(1)]
    conn.data_to_send()
    return conn


def full_limits(**limits: Any) -> RTMPServerConnection:
    """A handshaken connection already under its full size limits, as after an accepted
    publish (for tests of the chunk layer that do not care about the publish)."""
    conn = handshaken(**limits)
    conn.use_full_limits()
    return conn


@dataclass
class Reply:
    """One message the server sent, decoded."""

    raw: RawMessage

    @property
    def values(self) -> list[Any]:
        """AMF0 values of a command/data message."""
        return amf0.decode(self.raw.payload)

    @property
    def name(self) -> str:
        """Command name."""
        value = self.values[0]
        assert isinstance(value, str)
        return value


def statuses(replies: list[Reply]) -> list[dict[str, Any]]:
    """The info objects of every ``onStatus``/``_error`` among ``replies``."""
    answers = ("onStatus", "_error")
    return [r.values[3] for r in replies if r.raw.type_id == 20 and r.name in answers]


class ServerOutput:
    """Parses what the server sends: S0/S1/S2 (optional), then chunks with its chunk size."""

    def __init__(self, *, expect_handshake: bool = False) -> None:
        self._reader = ChunkReader(max_message_size=1 << 24, max_chunk_streams=64)
        self._pending = b""
        self._handshake_left = 1 + 2 * 1536 if expect_handshake else 0

    def feed(self, data: bytes) -> list[Reply]:
        """Decode every complete message in ``data`` (plus what was pending)."""
        data = self._pending + data
        skip = min(self._handshake_left, len(data))
        self._handshake_left -= skip
        view = memoryview(data)
        pos = skip
        replies = []
        while True:
            message, pos = self._reader.read_message(view, pos)
            if message is None:
                break
            if message.type_id == 1:
                self._reader.chunk_size = struct.unpack(">I", message.payload)[0]
            replies.append(Reply(message))
        self._pending = bytes(view[pos:])
        view.release()
        return replies


def feed_bytewise(conn: RTMPServerConnection, data: bytes) -> list[Event]:
    """Feed ``data`` one byte at a time; return all events."""
    events: list[Event] = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    return events


PENDING_JUNK = (b"\x01\x00", b"\x06\x00\x00\x00")
"""Trailing bytes that start a chunk but cannot finish it: must stay pending."""
ERROR_JUNK = b"\xc0\xc8"
"""A type 3 chunk on an unused chunk stream (264): must be a protocol error."""
ERROR_JUNK_MESSAGE = "RTMP chunk stream 264 starts with a type 3 header"


def check_feeds(
    data: bytes,
    expected: Sequence[Event],
    *,
    start: Callable[..., RTMPServerConnection] = handshaken,
    **limits: Any,
) -> None:
    """h11-style: ``data`` gives ``expected`` fed whole, one byte at a time and followed by
    trailing junk (pending junk changes nothing; bad junk is an error that carries the events
    before it). Each feed goes to a new connection made by ``start`` (e.g. :func:`connected`)."""
    expected = list(expected)
    assert start(**limits).receive_data(data) == expected
    assert feed_bytewise(start(**limits), data) == expected
    for junk in PENDING_JUNK:
        assert start(**limits).receive_data(data + junk) == expected
    conn = start(**limits)
    assert conn.receive_data(data) == expected
    with pytest.raises(RTMPProtocolError, match=ERROR_JUNK_MESSAGE):
        conn.receive_data(ERROR_JUNK)
    with pytest.raises(RTMPProtocolError, match=ERROR_JUNK_MESSAGE) as caught:
        start(**limits).receive_data(data + ERROR_JUNK)
    assert list(caught.value.events) == expected
