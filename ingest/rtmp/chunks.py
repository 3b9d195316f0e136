"""RTMP chunk streams (RTMP 5.3): splitting messages into chunks and reassembling them.

:class:`ChunkReader` turns received bytes into whole :class:`RawMessage` objects, one message
per call so that a Set Chunk Size or Abort message takes effect before the next chunk is read.
It never consumes a partial chunk: when the bytes run out it returns the offset at which the
incomplete chunk starts, and the caller keeps those bytes for the next call (commit/rollback).

:class:`ChunkWriter` serialises outgoing messages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ingest.rtmp.errors import RTMPProtocolError

__all__ = ["DEFAULT_CHUNK_SIZE", "ChunkReader", "ChunkWriter", "RawMessage"]

DEFAULT_CHUNK_SIZE = 128
"""RTMP 5.4.1: the chunk size both sides start with."""

TIMESTAMP_MASK = 0xFFFFFFFF
"""RTMP 5.3.1.2: timestamps are 32-bit and wrap around."""

_EXTENDED = 0xFFFFFF
"""RTMP 5.3.1.3: a 24-bit timestamp field of 0xFFFFFF means an extended timestamp follows."""

_HEADER_SIZES = (11, 7, 3, 0)
"""RTMP 5.3.1.2: message header length of chunk types (fmt) 0, 1, 2 and 3."""

_U32 = struct.Struct(">I")
_U32_LE = struct.Struct("<I")


@dataclass(slots=True)
class RawMessage:
    """One reassembled RTMP message (RTMP 5.3.1.2 message header plus its body)."""

    csid: int
    """Chunk stream id it arrived on."""
    type_id: int
    """Message type id (1-6 protocol control, 8 audio, 9 video, 18/20 AMF0 data/command...)."""
    stream_id: int
    """Message stream id."""
    timestamp: int
    """Absolute timestamp in milliseconds, modulo 2**32."""
    payload: bytes
    """The message body."""


class _ChunkStream:
    """Per chunk stream id state: the last header's values and a partly received message."""

    __slots__ = (
        "delta",
        "length",
        "partial",
        "remaining",
        "stream_id",
        "timestamp",
        "ts_field",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.ts_field = 0  # raw 24-bit field of the last type 0/1/2 header
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.remaining = 0  # bytes still missing from the message being received
        self.partial = bytearray()


class ChunkReader:
    """Reassembles messages from the chunk streams of one connection (RTMP 5.3)."""

    def __init__(self, *, max_message_size: int, max_chunk_streams: int) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        """Maximum chunk payload the peer sends (changed by its Set Chunk Size message)."""
        self._max_message_size = max_message_size
        self._max_chunk_streams = max_chunk_streams
        self._streams: dict[int, _ChunkStream] = {}
        self._unfinished = 0  # bytes of partly received messages, all chunk streams together

    def set_limits(self, *, max_message_size: int, max_chunk_streams: int) -> None:
        """Change the limits for what is read from now on (raised once a publish is accepted)."""
        self._max_message_size = max_message_size
        self._max_chunk_streams = max_chunk_streams

    @property
    def unfinished_bytes(self) -> int:
        """Bytes of partly received messages, every chunk stream together."""
        return self._unfinished

    def abort(self, csid: int) -> None:
        """RTMP 5.4.2: discard the partly received message of chunk stream ``csid``."""
        stream = self._streams.get(csid)
        if stream is not None:
            self._unfinished -= len(stream.partial)
            stream.remaining = 0
            stream.partial = bytearray()

    def read_message(self, data: memoryview, pos: int) -> tuple[RawMessage | None, int]:
        """Read chunks from ``data[pos:]`` until one message is complete.

        Returns the message (or ``None`` when more bytes are needed) and the offset of the
        first byte not consumed; an incomplete chunk is never consumed. Raises
        :class:`RTMPProtocolError` on malformed chunks or exceeded limits.
        """
        end = len(data)
        while pos < end:
            chunk = self._read_chunk(data, pos, end)
            if chunk is None:
                break
            pos, message = chunk
            if message is not None:
                return message, pos
        return None, pos

    def _read_chunk(
        self, data: memoryview, pos: int, end: int
    ) -> tuple[int, RawMessage | None] | None:
        """Read one whole chunk at ``pos``, or return ``None`` (nothing changed) if incomplete."""
        # RTMP 5.3.1.1: basic header of 1, 2 or 3 bytes.
        first = data[pos]
        fmt = first >> 6
        csid = first & 0x3F
        pos += 1
        if csid == 0:
            if pos + 1 > end:
                return None
            csid = 64 + data[pos]
            pos += 1
        elif csid == 1:
            if pos + 2 > end:
                return None
            csid = 64 + data[pos] + (data[pos + 1] << 8)
            pos += 2
        stream = self._streams.get(csid) or self._new_stream(csid, fmt)
        # RTMP 5.3.1.2: message header; RTMP 5.3.1.3: extended timestamp.
        header_end = pos + _HEADER_SIZES[fmt]
        if header_end > end:
            return None
        ts_field = (
            stream.ts_field if fmt == 3 else data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2]
        )
        payload_start = header_end
        if ts_field == _EXTENDED:
            payload_start += 4
            if payload_start > end:
                return None
            if fmt == 3 and _U32.unpack_from(data, header_end)[0] != stream.delta:
                payload_start = header_end  # not repeated by this sender: the bytes are payload
        if fmt == 3:
            size = self._continue_or_repeat(stream, payload_start, end)
        else:
            size = self._new_header(stream, csid, fmt, data, pos, payload_start, end)
        if size < 0:
            return None
        payload_end = payload_start + size
        return payload_end, self._append(stream, csid, data[payload_start:payload_end])

    def _continue_or_repeat(self, stream: _ChunkStream, payload_start: int, end: int) -> int:
        """Type 3 chunk: either the next piece of a message, or a new message that reuses
        every header field and the previous timestamp delta (RTMP 5.3.1.2.4).

        RTMP 5.3.1.3: when the last type 0/1/2 header had an extended timestamp, a type 3
        chunk repeats it (ffmpeg, OBS and GStreamer do). Some old senders omit it, so, like
        SRS and GStreamer, the 4 bytes count as the repetition only if they equal the stored
        value. Returns the payload size, or -1 (nothing changed) when the chunk is incomplete.
        """
        starting = stream.remaining == 0
        left = stream.length if starting else stream.remaining
        size = left if left < self.chunk_size else self.chunk_size
        if payload_start + size > end:
            return -1
        if starting:
            stream.timestamp = (stream.timestamp + stream.delta) & TIMESTAMP_MASK
            stream.remaining = stream.length
        return size

    def _new_header(
        self,
        stream: _ChunkStream,
        csid: int,
        fmt: int,
        data: memoryview,
        pos: int,
        payload_start: int,
        end: int,
    ) -> int:
        """Type 0/1/2 chunk: store its header and start a message. Returns the payload size,
        or -1 (nothing changed) when the chunk is incomplete."""
        if stream.remaining:
            raise RTMPProtocolError(
                f"RTMP chunk stream {csid} got a type {fmt} header before its message was complete"
            )
        length, type_id = stream.length, stream.type_id
        if fmt < 2:
            length = data[pos + 3] << 16 | data[pos + 4] << 8 | data[pos + 5]
            type_id = data[pos + 6]
            if length > self._max_message_size:
                raise RTMPProtocolError(
                    f"RTMP message of {length} bytes exceeds limit {self._max_message_size}"
                )
        size = length if length < self.chunk_size else self.chunk_size
        if payload_start + size > end:
            return -1
        field = data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2]
        value = _U32.unpack_from(data, payload_start - 4)[0] if field == _EXTENDED else field
        stream.ts_field = field
        if fmt == 0:
            # RTMP 5.3.1.2.1: absolute timestamp. A type 3 chunk starting a new message after
            # a type 0 header takes this value as its delta (RTMP 5.3.1.2.4).
            stream.timestamp = value
            stream.stream_id = _U32_LE.unpack_from(data, pos + 7)[0]
        else:
            # RTMP 5.3.1.2.2/5.3.1.2.3: timestamp delta from the previous message.
            stream.timestamp = (stream.timestamp + value) & TIMESTAMP_MASK
        stream.delta = value
        stream.length = length
        stream.type_id = type_id
        stream.remaining = length
        return size

    def _append(self, stream: _ChunkStream, csid: int, piece: memoryview) -> RawMessage | None:
        """Add a chunk payload to its message; return the message once it is complete."""
        stream.remaining -= len(piece)
        partial = stream.partial
        if stream.remaining == 0 and not partial:
            payload = bytes(piece)  # the whole message came in one chunk
        else:
            partial += piece
            if stream.remaining:
                self._count_unfinished(len(piece))
                return None
            self._unfinished -= len(partial) - len(piece)
            payload = bytes(partial)
            partial.clear()
        return RawMessage(csid, stream.type_id, stream.stream_id, stream.timestamp, payload)

    def _count_unfinished(self, size: int) -> None:
        # The message size limit also bounds the bytes buffered across all chunk streams.
        self._unfinished += size
        if self._unfinished > self._max_message_size:
            raise RTMPProtocolError(
                f"RTMP unfinished messages exceed limit {self._max_message_size} bytes"
            )

    def _new_stream(self, csid: int, fmt: int) -> _ChunkStream:
        if len(self._streams) >= self._max_chunk_streams:
            raise RTMPProtocolError(
                f"RTMP peer used more than {self._max_chunk_streams} chunk streams"
            )
        # RTMP 5.3.1.2: the first chunk of a chunk stream needs a full header. librtmp sends a
        # type 1 header on a fresh chunk stream for pings (message stream id 0), so allow it.
        if fmt > 1:
            raise RTMPProtocolError(f"RTMP chunk stream {csid} starts with a type {fmt} header")
        stream = _ChunkStream()
        self._streams[csid] = stream
        return stream


class ChunkWriter:
    """Splits outgoing messages into chunks of :attr:`chunk_size` bytes (RTMP 5.3)."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        """Our outgoing chunk size; change it only right after queueing Set Chunk Size."""

    def write(
        self,
        out: bytearray,
        *,
        csid: int,
        type_id: int,
        stream_id: int,
        payload: bytes,
        timestamp: int = 0,
    ) -> None:
        """Append ``payload`` to ``out`` as a type 0 chunk followed by type 3 chunks."""
        timestamp &= TIMESTAMP_MASK
        extended = timestamp >= _EXTENDED
        basic = _basic_header(0, csid)
        length = len(payload)
        out += basic
        out += (_EXTENDED if extended else timestamp).to_bytes(3, "big")
        out += length.to_bytes(3, "big")
        out.append(type_id)
        out += _U32_LE.pack(stream_id)
        ext = _U32.pack(timestamp) if extended else b""
        out += ext
        step = self.chunk_size
        out += payload[:step]
        continuation = _basic_header(3, csid) + ext  # RTMP 5.3.1.3: repeat the extension
        for offset in range(step, length, step):
            out += continuation
            out += payload[offset : offset + step]


def _basic_header(fmt: int, csid: int) -> bytes:
    """RTMP 5.3.1.1: encode a basic header for chunk stream ids 2..65599."""
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 64 + 256:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))
