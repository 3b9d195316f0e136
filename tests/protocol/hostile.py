"""Hostile input for the sans-IO RTMP layer: valid publish sessions, ways to break them, and the
invariants every input must keep.

A publish session is built as a list of byte blocks (handshake, one block per message) as
ffmpeg, OBS and GStreamer send them: Set Chunk Size first, then connect, the FMLE commands,
``@setDataFrame`` and audio/video with compressed headers (fmt 1/2/3) and extended timestamps.
Nasty blocks (absurd chunk sizes, message lengths, chunk stream ids, AMF nesting) can be
spliced in between, and byte-level mutations applied on top.

:func:`run` feeds bytes the way a server would (answering connect and publish like a session)
and checks after every call: only :class:`RTMPProtocolError` escapes, a dead connection stays
dead, :attr:`~RTMPServerConnection.buffered_bytes` stays within :meth:`Limits.buffer_bound`
(within the much smaller :meth:`Limits.pre_publish_bound` until a publish is accepted), and
the replies queued so far grow at most linearly with the bytes received so far.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.connection import (
    PRE_PUBLISH_MAX_CHUNK_SIZE,
    PRE_PUBLISH_MAX_MESSAGE_SIZE,
    RTMPServerConnection,
)
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import ConnectRequested, Event, PlayRequested, PublishRequested
from ingest.rtmp.state import State
from tests.protocol.helpers import (
    AUDIO,
    C0C1,
    C2,
    COMMAND,
    DATA,
    VIDEO,
    chunk_header,
    message_chunks,
)

MAX_CHUNK_HEADER = 3 + 11 + 4
"""RTMP 5.3.1: the longest chunk header (3-byte basic header, type 0, extended timestamp)."""
HANDSHAKE_PENDING = 1536
"""Most handshake bytes the connection can hold before C0+C1 (1537) or C2 (1536) is whole."""
REPLY_FACTOR = 8
"""Replies may be this many times the bytes received (a 26-byte FCPublish gets ~200 bytes)..."""
REPLY_CONSTANT = 8192
"""...plus this much (S0+S1+S2 and the connect/publish answers)."""
ABSURD_DEPTH = 8000
"""AMF0 nesting far past any limit that still fits in a message a peer may send before its
publish is accepted (at most 8 bytes a level, under 64 KiB)."""


@dataclass(frozen=True)
class Limits:
    """The DoS limits a connection is built with."""

    max_message_size: int = 16 * 1024 * 1024
    max_chunk_size: int = 16 * 1024 * 1024
    max_chunk_streams: int = 64
    max_amf_depth: int = 32

    def connection(self) -> RTMPServerConnection:
        """A new server connection with these limits."""
        return RTMPServerConnection(
            max_message_size=self.max_message_size,
            max_chunk_size=self.max_chunk_size,
            max_chunk_streams=self.max_chunk_streams,
            max_amf_depth=self.max_amf_depth,
        )

    def buffer_bound(self) -> int:
        """Most bytes a connection may hold for unfinished input: one incomplete chunk (or
        handshake packet) waiting in the receive buffer, plus the partly received messages of
        every chunk stream together (capped at the message size limit)."""
        return _bound(self.max_chunk_size, self.max_message_size)

    def pre_publish_bound(self) -> int:
        """The same bound under the small limits that hold until a publish is accepted."""
        message = min(PRE_PUBLISH_MAX_MESSAGE_SIZE, self.max_message_size)
        return _bound(min(PRE_PUBLISH_MAX_CHUNK_SIZE, self.max_chunk_size), message)


def _bound(max_chunk_size: int, max_message_size: int) -> int:
    largest_chunk = min(max_chunk_size, max_message_size) + MAX_CHUNK_HEADER
    return max(HANDSHAKE_PENDING, largest_chunk) + max_message_size


# -- valid publish sessions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One audio or video message of a publish."""

    kind: int
    """8 audio, 9 video."""
    delta: int
    """Milliseconds since the previous frame of the same kind."""
    payload: bytes


@dataclass(frozen=True)
class PublishSession:
    """What a publisher sends, as message-sized blocks (see :func:`publish_blocks`)."""

    chunk_size: int = 4096
    """Announced with Set Chunk Size before connect (ffmpeg: 4096, OBS: 4096, GStreamer: 128)."""
    start: int = 0
    """Timestamp of the first frames (>= 0xFFFFFF exercises extended timestamps)."""
    frames: tuple[Frame, ...] = ()
    key: str = "sk_live_fuzz"
    audio_csid: int = 4
    video_csid: int = 6


def publish_blocks(session: PublishSession) -> list[bytes]:
    """The session as blocks: handshake, then one block per message (chunked)."""
    size = session.chunk_size

    def cmd(name: str, tid: float, *args: object, stream_id: int = 0, csid: int = 3) -> bytes:
        body = amf0.encode(name, tid, *args)
        return message_chunks(0, csid, body, type_id=COMMAND, stream_id=stream_id, chunk_size=size)

    connect = {"app": "live", "type": "nonprivate", "tcUrl": "rtmp://127.0.0.1/live"}
    metadata = amf0.ECMAArray(videocodecid=7.0, audiocodecid=10.0, width=640.0, height=360.0)
    blocks = [
        C0C1,
        C2,
        message_chunks(0, 2, struct.pack(">I", size), type_id=1, stream_id=0),
        cmd("connect", 1.0, connect),
        cmd("releaseStream", 2.0, None, session.key),
        cmd("FCPublish", 3.0, None, session.key),
        cmd("createStream", 4.0, None),
        cmd("publish", 5.0, None, session.key, "live", stream_id=1, csid=8),
        message_chunks(
            0,
            4,
            amf0.encode("@setDataFrame", "onMetaData", metadata),
            type_id=DATA,
            chunk_size=size,
        ),
    ]
    return blocks + _frame_blocks(session)


def expected_media(session: PublishSession) -> list[tuple[int, int, bytes]]:
    """(kind, absolute timestamp, payload) of every frame, in order."""
    clock: dict[int, int] = {}
    media = []
    for frame in session.frames:
        now = clock.get(frame.kind)
        now = session.start + frame.delta if now is None else now + frame.delta
        clock[frame.kind] = now & 0xFFFFFFFF
        media.append((frame.kind, clock[frame.kind], frame.payload))
    return media


def _frame_blocks(session: PublishSession) -> list[bytes]:
    """Audio and video messages with the header compression real encoders use (RTMP 5.3.1.2):
    type 0 first, then type 1 (new length), type 2 (new delta) or type 3 (same delta and
    length as the previous message of that chunk stream)."""
    last: dict[int, tuple[int, int] | None] = {AUDIO: None, VIDEO: None}
    blocks = []
    for frame in session.frames:
        csid = session.audio_csid if frame.kind == AUDIO else session.video_csid
        previous = last[frame.kind]
        length = len(frame.payload)
        if previous is None:
            fmt, stamp = 0, (session.start + frame.delta) & 0xFFFFFFFF
        elif previous == (frame.delta, length):
            fmt, stamp = 3, frame.delta
        elif previous[1] == length:
            fmt, stamp = 2, frame.delta
        else:
            fmt, stamp = 1, frame.delta
        last[frame.kind] = (stamp, length)  # after type 0 the "delta" is the timestamp
        blocks.append(
            message_chunks(
                fmt,
                csid,
                frame.payload,
                timestamp=stamp,
                type_id=frame.kind,
                chunk_size=session.chunk_size,
            )
        )
    return blocks


# -- nasty blocks -------------------------------------------------------------------------------


def set_chunk_size_block(size: int) -> bytes:
    """RTMP 5.4.1 Set Chunk Size with any 32-bit value (0, top bit set...)."""
    return message_chunks(0, 2, struct.pack(">I", size & 0xFFFFFFFF), type_id=1, stream_id=0)


def declared_length_block(length: int, type_id: int, body: bytes, csid: int = 9) -> bytes:
    """A type 0 header declaring ``length`` (up to 0xFFFFFF) followed by ``body``, whatever its
    real size."""
    return chunk_header(0, csid, length=length, type_id=type_id, stream_id=1) + body


def chunk_stream_flood(csids: Sequence[int]) -> bytes:
    """A one-byte audio message on each chunk stream id in ``csids`` (2..65599)."""
    return b"".join(message_chunks(0, csid, b"\xaf", type_id=AUDIO) for csid in csids)


NESTING_OPENERS = {
    "strict_array": b"\x0a\x00\x00\x00\x01",
    "object": b"\x03\x00\x01k",
    "ecma_array": b"\x08\x00\x00\x00\x01\x00\x01k",
    "typed_object": b"\x10\x00\x01T\x00\x01k",
}
"""AMF0 prefixes that open one more nesting level (a container holding one value)."""


def nested_amf(depth: int, kind: str) -> bytes:
    """An AMF0 value nested ``depth`` levels deep (innermost: null). Not closed: the decoder
    must give up at its depth limit long before it would look for the end markers."""
    return NESTING_OPENERS[kind] * depth + b"\x05"


def deep_command_block(depth: int, kind: str, *, as_data: bool = False) -> bytes:
    """A command (or data) message whose argument nests ``depth`` levels."""
    if as_data:
        body = amf0.encode("@setDataFrame", "onMetaData") + nested_amf(depth, kind)
        return message_chunks(0, 4, body, type_id=DATA, chunk_size=128)
    body = amf0.encode("connect", 1.0) + nested_amf(depth, kind)
    return message_chunks(0, 3, body, type_id=COMMAND, stream_id=0)


def empty_media_flood(count: int) -> bytes:
    """A zero-length audio message, then ``count`` one-byte type 3 headers each repeating it."""
    return message_chunks(0, 5, b"", type_id=AUDIO) + bytes([0xC5]) * count


# -- byte-level mutations ----------------------------------------------------------------------

Mutation = tuple[str, int, int | bytes]
"""(kind, offset, argument): flip (bit), insert (bytes), delete (count), set (byte value),
duplicate (count)."""


def mutate(data: bytes, mutations: Sequence[Mutation]) -> bytes:
    """Apply ``mutations`` in order; offsets wrap around the current length."""
    out = bytearray(data)
    for kind, offset, argument in mutations:
        at = offset % (len(out) + 1)
        if kind == "insert" and isinstance(argument, bytes):
            out[at:at] = argument
        elif not out or at == len(out):
            continue
        elif kind == "flip" and isinstance(argument, int):
            out[at] ^= 1 << (argument % 8)
        elif kind == "set" and isinstance(argument, int):
            out[at] = argument & 0xFF
        elif kind == "delete" and isinstance(argument, int):
            del out[at : at + argument]
        elif kind == "duplicate" and isinstance(argument, int):
            out[at:at] = out[at : at + argument]
    return bytes(out)


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (offsets wrap around; empty pieces kept)."""
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


# -- the invariant runner -----------------------------------------------------------------------

Outcome = tuple[list[Event], str | None]
"""The events received and the protocol error that ended the connection, if any."""


def answer(conn: RTMPServerConnection, events: Sequence[Event]) -> None:
    """Answer like a session: accept connect, accept publish on odd stream ids and refuse on
    even ones, refuse play."""
    for event in events:
        if isinstance(event, ConnectRequested):
            conn.accept_connect(event.transaction_id)
        elif isinstance(event, PublishRequested):
            if event.stream_id % 2:
                conn.accept_publish(event.stream_id)
            else:
                conn.reject_publish(event.stream_id)
        elif isinstance(event, PlayRequested):
            conn.send_status(event.stream_id, "error", "NetStream.Play.Failed", "no")


def run(data: bytes, cuts: Sequence[int] = (), limits: Limits | None = None) -> Outcome:
    """Feed ``data`` split at ``cuts`` to a new connection and check every invariant (see the
    module docstring) after each call."""
    limits = limits or Limits()
    conn = limits.connection()
    bound, pre_publish_bound = limits.buffer_bound(), limits.pre_publish_bound()
    events: list[Event] = []
    replied = 0
    for piece in split(data, cuts):
        while True:  # a publish pauses parsing until it is answered: then read what waited
            try:
                new = conn.receive_data(piece)
            except RTMPProtocolError as exc:
                assert conn.close_reason == str(exc)
                assert all(isinstance(event, Event) for event in exc.events)
                with pytest.raises(RTMPProtocolError, match="RTMP connection is closed"):
                    conn.receive_data(b"\x00")
                return [*events, *exc.events], str(exc)
            assert all(isinstance(event, Event) for event in new)
            paused = conn.state is State.PUBLISH_REQUESTED
            answer(conn, new)
            replied += len(conn.data_to_send())
            assert replied <= REPLY_FACTOR * conn.bytes_received + REPLY_CONSTANT
            events += new
            if not paused:
                break
            piece = b""
        assert conn.buffered_bytes <= bound, (conn.buffered_bytes, bound)
        if conn.state is not State.PUBLISHING:
            assert conn.buffered_bytes <= pre_publish_bound, (conn.buffered_bytes, conn.state)
    return events, None


def check_split_invariance(data: bytes, cuts: Sequence[int], limits: Limits) -> Outcome:
    """How the bytes are split never changes the outcome (h11's fuzz invariant)."""
    whole = run(data, (), limits)
    pieces = run(data, cuts, limits)
    assert whole[1] == pieces[1]
    if whole[1] is None:
        assert whole[0] == pieces[0]
    return whole
