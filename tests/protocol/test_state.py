"""The connection's state table: commands out of order are protocol errors, events parsed before
an error are still delivered, and the limits are small until a publish is accepted."""

from __future__ import annotations

import pytest

from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import ConnectRequested, PublishRequested, StreamCreated
from tests.protocol.helpers import (
    AUDIO,
    ERROR_JUNK,
    ERROR_JUNK_MESSAGE,
    chunk_header,
    command,
    connect_command,
    handshaken,
    message_chunks,
    set_chunk_size,
)

KEY = "sk_live_123"
PUBLISH = command("publish", 5.0, None, KEY, "live", stream_id=1, csid=8)
CREATE_STREAM = command("createStream", 4.0, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (PUBLISH, "RTMP publish before connect"),
        (CREATE_STREAM + PUBLISH, "RTMP createStream before connect"),
        (command("play", 5.0, None, KEY, stream_id=1), "RTMP play before connect"),
        (command("FCPublish", 3.0, None, KEY), "RTMP FCPublish before connect"),
        (command("_checkbw", 2.0, None), "RTMP _checkbw before connect"),
    ],
    ids=["publish", "createStream", "play", "FCPublish", "other"],
)
def test_commands_before_connect_are_protocol_errors(data: bytes, message: str) -> None:
    conn = handshaken()
    with pytest.raises(RTMPProtocolError, match=f"^{message}$"):
        conn.receive_data(data)


def test_publish_to_another_app_without_connect_is_a_protocol_error() -> None:
    # The application name is only known from connect: skipping it must not skip its check.
    conn = handshaken()
    publish = command("publish", 5.0, None, "other/" + KEY, "live", stream_id=1, csid=8)
    with pytest.raises(RTMPProtocolError, match=r"^RTMP publish before connect$"):
        conn.receive_data(publish)


@pytest.mark.parametrize(
    ("after_connect", "message"),
    [
        (PUBLISH, "RTMP publish before createStream"),
        (command("play", 5.0, None, KEY, stream_id=1), "RTMP play before createStream"),
        (connect_command(transaction_id=2.0), "RTMP connect after connect"),
    ],
    ids=["publish", "play", "connect"],
)
def test_commands_out_of_order_after_connect(after_connect: bytes, message: str) -> None:
    conn = handshaken()
    conn.receive_data(connect_command())
    conn.accept_connect(1.0)
    with pytest.raises(RTMPProtocolError, match=f"^{message}$"):
        conn.receive_data(after_connect)


def test_pipelined_publish_reports_connect_first() -> None:
    # A client that does not wait for the connect result still gets its events in order, so
    # the session judges the application before it ever sees the publish.
    conn = handshaken()
    events = conn.receive_data(connect_command(app="other") + CREATE_STREAM + PUBLISH)
    assert [type(event) for event in events] == [
        ConnectRequested,
        StreamCreated,
        PublishRequested,
    ]
    assert isinstance(events[0], ConnectRequested) and events[0].app == "other"


def test_events_before_a_protocol_error_are_delivered_with_it() -> None:
    conn = handshaken()
    with pytest.raises(RTMPProtocolError, match=ERROR_JUNK_MESSAGE) as caught:
        conn.receive_data(connect_command() + ERROR_JUNK)
    [connect] = caught.value.events
    assert isinstance(connect, ConnectRequested) and connect.app == "live"
    with pytest.raises(RTMPProtocolError, match="RTMP connection is closed") as again:
        conn.receive_data(b"")
    assert again.value.events == ()


def test_events_before_an_out_of_order_command_are_delivered_with_it() -> None:
    conn = handshaken()
    media = message_chunks(0, 4, b"\xaf\x01", type_id=AUDIO, stream_id=1)
    with pytest.raises(RTMPProtocolError, match="RTMP publish before connect") as caught:
        conn.receive_data(media + media + PUBLISH)
    assert len(caught.value.events) == 2


# -- limits before a publish is accepted ------------------------------------------------------

SMALL = 64 * 1024


def publishing(**limits: int) -> object:
    """A connection whose publish on message stream 1 was accepted."""
    conn = handshaken(**limits)
    conn.receive_data(connect_command() + CREATE_STREAM + PUBLISH)
    conn.accept_connect(1.0)
    conn.accept_publish(1)
    conn.data_to_send()
    return conn


def test_a_16_mib_message_before_publish_is_a_protocol_error() -> None:
    conn = handshaken()
    header = chunk_header(0, 4, length=0xFFFFFF, type_id=AUDIO, stream_id=1)
    with pytest.raises(RTMPProtocolError, match=f"exceeds limit {SMALL}$"):
        conn.receive_data(connect_command() + header + bytes(128))
    assert conn.buffered_bytes == 0


def test_unfinished_messages_before_publish_stay_under_the_small_limit() -> None:
    conn = handshaken()
    conn.receive_data(connect_command())
    # Chunk streams each holding 401 whole chunks (51328 bytes) of an unfinished message.
    partial = 12 + 128 + 400 * (1 + 128)
    with pytest.raises(RTMPProtocolError, match=f"exceed limit {SMALL} bytes"):
        for csid in range(4, 8):
            conn.receive_data(message_chunks(0, csid, bytes(SMALL), type_id=AUDIO)[:partial])
            assert conn.buffered_bytes <= SMALL


def test_chunk_streams_and_chunk_size_are_small_before_publish() -> None:
    conn = handshaken()
    with pytest.raises(RTMPProtocolError, match="more than 8 chunk streams"):
        conn.receive_data(
            b"".join(message_chunks(0, c, b"\xaf", type_id=AUDIO) for c in range(2, 12))
        )
    conn = handshaken()
    with pytest.raises(RTMPProtocolError, match=f"outside 1..{SMALL}"):
        conn.receive_data(set_chunk_size(SMALL + 1))
    conn = handshaken()
    assert conn.receive_data(set_chunk_size(SMALL)) == []


def test_the_full_limits_apply_once_the_publish_is_accepted() -> None:
    conn = publishing()
    big = bytes(1024 * 1024)
    events = conn.receive_data(  # type: ignore[attr-defined]
        set_chunk_size(1 << 20)
        + message_chunks(0, 6, big, type_id=9, chunk_size=1 << 20)
        + b"".join(message_chunks(0, c, b"\xaf", type_id=AUDIO) for c in range(10, 40))
    )
    assert len(events) == 31


def test_the_small_limits_never_exceed_the_configured_ones() -> None:
    conn = handshaken(max_message_size=1000, max_chunk_streams=4)
    with pytest.raises(RTMPProtocolError, match=r"exceeds limit 1000$"):
        conn.receive_data(message_chunks(0, 4, bytes(1001), type_id=AUDIO))


def test_limits_before_publish_are_constructor_arguments() -> None:
    conn = handshaken(pre_publish_max_message_size=100)
    with pytest.raises(RTMPProtocolError, match=r"exceeds limit 100$"):
        conn.receive_data(message_chunks(0, 4, bytes(101), type_id=AUDIO))
