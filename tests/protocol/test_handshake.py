"""Server handshake (RTMP 5.2): version check, S0/S1/S2, split reads, data after C2."""

from __future__ import annotations

import pytest

from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import HandshakeCompleted, MediaReceived
from tests.protocol.helpers import C0C1, C1, C2, feed_bytewise, message_chunks


def check_reply(reply: bytes) -> None:
    assert len(reply) == 1 + 1536 + 1536
    assert reply[0] == 3  # S0
    assert reply[1:9] == bytes(8)  # S1: time 0, zero
    assert reply[1 + 1536 :] == C1  # S2 echoes C1


def test_whole_handshake() -> None:
    conn = RTMPServerConnection()
    assert conn.receive_data(C0C1) == []
    check_reply(conn.data_to_send())
    assert not conn.handshake_completed
    assert conn.receive_data(C2) == [HandshakeCompleted()]
    assert conn.handshake_completed
    assert conn.data_to_send() == b""
    assert conn.bytes_received == 1537 + 1536


def test_handshake_one_byte_at_a_time() -> None:
    conn = RTMPServerConnection()
    assert feed_bytewise(conn, C0C1[:-1]) == []
    assert conn.data_to_send() == b""  # nothing before the whole C1
    assert conn.receive_data(C0C1[-1:]) == []
    check_reply(conn.data_to_send())
    assert feed_bytewise(conn, C2) == [HandshakeCompleted()]
    assert conn.data_to_send() == b""


def test_c0_c1_c2_in_one_packet() -> None:
    conn = RTMPServerConnection()
    assert conn.receive_data(C0C1 + C2) == [HandshakeCompleted()]
    check_reply(conn.data_to_send())


def test_chunk_data_in_the_same_packet_as_c2() -> None:
    media = message_chunks(0, 6, b"frame", timestamp=9)
    conn = RTMPServerConnection()
    conn.receive_data(C0C1)
    events = conn.receive_data(C2 + media + media[:3])
    assert events == [HandshakeCompleted(), MediaReceived(1, 9, 9, b"frame")]
    assert conn.receive_data(media[3:]) == [MediaReceived(1, 9, 9, b"frame")]


def test_handshake_and_data_fed_one_byte_at_a_time() -> None:
    media = message_chunks(0, 6, b"frame", timestamp=9)
    events = feed_bytewise(RTMPServerConnection(), C0C1 + C2 + media)
    assert events == [HandshakeCompleted(), MediaReceived(1, 9, 9, b"frame")]


@pytest.mark.parametrize("version", [0, 6, 0xFF])
def test_bad_version_is_rejected_at_once(version: int) -> None:
    conn = RTMPServerConnection()
    with pytest.raises(RTMPProtocolError, match=f"^unsupported RTMP version {version}$"):
        conn.receive_data(bytes([version]))
    assert conn.data_to_send() == b""
    assert conn.close_reason == f"unsupported RTMP version {version}"
    with pytest.raises(RTMPProtocolError, match=r"RTMP connection is closed"):
        conn.receive_data(C0C1)


def test_trailing_junk_after_c1_waits_for_c2() -> None:
    conn = RTMPServerConnection()
    assert conn.receive_data(C0C1 + b"\xff" * 100) == []
    check_reply(conn.data_to_send())
    assert conn.receive_data(C2[100:]) == [HandshakeCompleted()]


def test_accepts_memoryview_and_bytearray() -> None:
    conn = RTMPServerConnection()
    assert conn.receive_data(memoryview(C0C1)) == []
    assert conn.receive_data(bytearray(C2)) == [HandshakeCompleted()]
