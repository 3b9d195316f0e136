"""RTMP message type ids and the bodies of protocol control messages (RTMP 5.4, 6.2, 7.1)."""

from __future__ import annotations

import enum
import struct

from ingest.rtmp.errors import RTMPProtocolError

__all__ = [
    "CONTROL_CSID",
    "MessageType",
    "PeerBandwidthLimit",
    "UserControlEvent",
    "read_u32",
    "read_user_control",
    "u32",
    "user_control",
]

CONTROL_CSID = 2
"""RTMP 5.4: protocol control messages use chunk stream id 2 and message stream id 0."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class MessageType(enum.IntEnum):
    """RTMP message type ids."""

    SET_CHUNK_SIZE = 1  # RTMP 5.4.1
    ABORT = 2  # RTMP 5.4.2
    ACKNOWLEDGEMENT = 3  # RTMP 5.4.3
    USER_CONTROL = 4  # RTMP 6.2 / 7.1.7
    WINDOW_ACK_SIZE = 5  # RTMP 5.4.4
    SET_PEER_BANDWIDTH = 6  # RTMP 5.4.5
    AUDIO = 8  # RTMP 7.1.4
    VIDEO = 9  # RTMP 7.1.5
    DATA_AMF3 = 15  # RTMP 7.1.2
    SHARED_OBJECT_AMF3 = 16  # RTMP 7.1.3
    COMMAND_AMF3 = 17  # RTMP 7.1.1
    DATA_AMF0 = 18  # RTMP 7.1.2
    SHARED_OBJECT_AMF0 = 19  # RTMP 7.1.3
    COMMAND_AMF0 = 20  # RTMP 7.1.1
    AGGREGATE = 22  # RTMP 7.1.6


class UserControlEvent(enum.IntEnum):
    """RTMP 7.1.7: user control event types."""

    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(enum.IntEnum):
    """RTMP 5.4.5: limit type of Set Peer Bandwidth."""

    HARD = 0
    SOFT = 1
    DYNAMIC = 2


def u32(value: int) -> bytes:
    """A 4-byte big-endian body (Set Chunk Size, Acknowledgement, Window Ack Size...)."""
    return _U32.pack(value & 0xFFFFFFFF)


def read_u32(payload: bytes, what: str) -> int:
    """The leading 4-byte big-endian number of a control message body."""
    if len(payload) < 4:
        raise RTMPProtocolError(f"RTMP {what} message is truncated")
    value: int = _U32.unpack_from(payload)[0]
    return value


def user_control(event: UserControlEvent, data: bytes) -> bytes:
    """RTMP 6.2: a user control message body, a 2-byte event type followed by event data."""
    return _U16.pack(event) + data


def read_user_control(payload: bytes) -> tuple[int, bytes]:
    """Split a user control message body into its event type and event data."""
    if len(payload) < 2:
        raise RTMPProtocolError("RTMP user control message is truncated")
    event: int = _U16.unpack_from(payload)[0]
    return event, payload[2:]
