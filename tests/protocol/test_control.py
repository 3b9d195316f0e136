"""Protocol control messages (RTMP 5.4) and user control events (RTMP 7.1.7)."""

from __future__ import annotations

import re
import struct

import pytest

from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import AcknowledgementReceived, MediaReceived
from tests.protocol.helpers import (
    ServerOutput,
    check_feeds,
    control,
    full_limits,
    handshaken,
    message_chunks,
    window_ack_size,
)

HANDSHAKE_BYTES = 1 + 1536 + 1536


def user_control(event: int, data: bytes) -> bytes:
    return control(4, struct.pack(">H", event) + data)


def acks(data: bytes) -> list[int]:
    """Sequence numbers of the Acknowledgements in the server's output."""
    replies = ServerOutput().feed(data)
    assert all(r.raw.type_id == 3 and r.raw.csid == 2 for r in replies)
    return [struct.unpack(">I", r.raw.payload)[0] for r in replies]


def test_no_acknowledgement_before_the_peer_announces_a_window() -> None:
    conn = full_limits()
    conn.receive_data(message_chunks(0, 6, b"x" * 5_000_000, chunk_size=128))
    assert conn.data_to_send() == b""


def test_acknowledgements_every_window_once_announced() -> None:
    """RTMP 5.4.3: after the peer's Window Acknowledgement Size, acknowledge each window."""
    conn = handshaken()
    announce = window_ack_size(1000)
    conn.receive_data(announce)
    # The handshake alone is more than a window: the first ack goes out at once.
    received = HANDSHAKE_BYTES + len(announce)
    assert acks(conn.data_to_send()) == [received]

    media = message_chunks(0, 6, bytes(5000), chunk_size=128)
    conn.receive_data(media[:999])
    assert conn.data_to_send() == b""
    conn.receive_data(media[999:1000])
    assert acks(conn.data_to_send()) == [received + 1000]
    conn.receive_data(media[1000:2500])
    assert acks(conn.data_to_send()) == [received + 2500]
    conn.receive_data(media[2500:3499])
    assert conn.data_to_send() == b""
    events = conn.receive_data(media[3499:])
    assert events == [MediaReceived(1, 9, 0, bytes(5000))]
    assert acks(conn.data_to_send()) == [received + len(media)]
    assert conn.bytes_received == received + len(media)


def test_window_announced_after_lots_of_data() -> None:
    conn = full_limits()
    conn.receive_data(message_chunks(0, 6, bytes(10_000)))
    assert conn.data_to_send() == b""
    conn.receive_data(window_ack_size(2_500_000))
    assert conn.data_to_send() == b""  # less than a window received so far
    conn.receive_data(message_chunks(0, 6, bytes(2_500_000))[:2_490_000])
    assert acks(conn.data_to_send()) == [conn.bytes_received]


def test_zero_window_disables_acknowledgements() -> None:
    conn = handshaken()
    conn.receive_data(window_ack_size(0) + message_chunks(0, 6, bytes(10_000)))
    assert conn.data_to_send() == b""


def test_ping_request_is_answered() -> None:
    """RTMP 7.1.7: PingRequest (6) gets a PingResponse (7) with the same timestamp."""
    conn = handshaken()
    assert conn.receive_data(user_control(6, b"\x01\x02\x03\x04")) == []
    [pong] = ServerOutput().feed(conn.data_to_send())
    assert (pong.raw.type_id, pong.raw.csid, pong.raw.stream_id) == (4, 2, 0)
    assert pong.raw.payload == b"\x00\x07\x01\x02\x03\x04"


def test_ping_request_fed_byte_by_byte_and_with_junk() -> None:
    check_feeds(user_control(6, b"\x00\x00\x00\x01"), [])


def test_client_user_control_events_need_no_answer() -> None:
    conn = handshaken()
    data = (
        user_control(0, b"\x00\x00\x00\x01")  # StreamBegin
        + user_control(3, b"\x00\x00\x00\x01\x00\x00\x0b\xb8")  # SetBufferLength
        + user_control(7, b"\x00\x00\x00\x09")  # PingResponse
        + user_control(99, b"")  # unknown
    )
    assert conn.receive_data(data) == []
    assert conn.data_to_send() == b""


def test_peer_acknowledgement_and_bandwidth() -> None:
    check_feeds(
        control(3, struct.pack(">I", 123456)) + control(6, struct.pack(">IB", 5_000_000, 2)),
        [AcknowledgementReceived(123456)],
    )


@pytest.mark.parametrize(
    ("type_id", "body", "message"),
    [
        (1, b"\x00\x00\x10", "RTMP Set Chunk Size message is truncated"),
        (2, b"", "RTMP Abort message is truncated"),
        (3, b"\x00", "RTMP Acknowledgement message is truncated"),
        (4, b"\x00", "RTMP user control message is truncated"),
        (4, b"\x00\x06\x00\x00\x01", "RTMP PingRequest is truncated"),
        (5, b"\x00\x00", "RTMP Window Acknowledgement Size message is truncated"),
    ],
)
def test_truncated_control_messages(type_id: int, body: bytes, message: str) -> None:
    conn = handshaken()
    with pytest.raises(RTMPProtocolError, match=f"^{re.escape(message)}$"):
        conn.receive_data(control(type_id, body))
