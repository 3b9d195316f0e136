"""Messages besides the publish flow: play, other commands, AMF3 commands, data messages,
unknown types, malformed commands and the connection's constructor arguments."""

from __future__ import annotations

import struct

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.amf0 import ECMAArray
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import (
    CommandReceived,
    ConnectRequested,
    MediaReceived,
    MetadataReceived,
    PlayRequested,
    StreamCreated,
)
from tests.protocol.helpers import (
    DATA,
    VIDEO,
    Reply,
    ServerOutput,
    check_feeds,
    command,
    connect_command,
    connected,
    handshaken,
    message_chunks,
    stream_created,
)

METADATA = ECMAArray(width=1280.0, height=720.0, videocodecid=7.0, encoder="Lavf61.7.100")
SET_DATA_FRAME = amf0.encode("@setDataFrame", "onMetaData", METADATA)
ON_METADATA = amf0.encode("onMetaData", METADATA)


def test_play_is_reported() -> None:
    check_feeds(
        command("play", 4.0, None, "cam1", -2.0, stream_id=1),
        [PlayRequested(stream_id=1, name="cam1")],
        start=stream_created,
    )


def test_other_commands_are_reported() -> None:
    check_feeds(
        command("getStreamLength", 3.0, None, "x") + command("_checkbw", 4.0),
        [
            CommandReceived(0, "getStreamLength", 3.0, [None, "x"]),
            CommandReceived(0, "_checkbw", 4.0, []),
        ],
        start=connected,
    )


def test_amf3_command_message_is_decoded_as_amf0() -> None:
    """Type 17: a leading 0 byte, then AMF0 values (as ffmpeg sends and reads them)."""
    body = b"\x00" + amf0.encode("createStream", 2.0, None)
    data = message_chunks(0, 3, body, type_id=17, stream_id=0)
    check_feeds(data, [StreamCreated(1)], start=connected)


def test_metadata_variants() -> None:
    enhanced = ECMAArray(videocodecid="hvc1", audiocodecid=10.0, framerate=30.0)
    data = (
        message_chunks(0, 4, ON_METADATA, type_id=DATA)
        + message_chunks(0, 4, b"\x00" + SET_DATA_FRAME, type_id=15)
        + message_chunks(0, 4, amf0.encode("@setDataFrame", "onMetaData", enhanced), type_id=DATA)
        + message_chunks(0, 4, amf0.encode("onMetaData", {"plain": True}), type_id=DATA)
        + message_chunks(0, 4, amf0.encode("@setDataFrame", "onTextData", {}), type_id=DATA)
        + message_chunks(0, 4, amf0.encode("@clearDataFrame", "onMetaData"), type_id=DATA)
        + message_chunks(0, 4, b"", type_id=DATA)
    )
    check_feeds(
        data,
        [
            MetadataReceived(1, dict(METADATA), ON_METADATA),
            MetadataReceived(1, dict(METADATA), ON_METADATA),
            MetadataReceived(1, dict(enhanced), amf0.encode("onMetaData", enhanced)),
            MetadataReceived(1, {"plain": True}, amf0.encode("onMetaData", {"plain": True})),
        ],
    )


def test_unknown_message_types_are_ignored() -> None:
    data = b"".join(
        message_chunks(0, 5, b"whatever", type_id=type_id) for type_id in (7, 16, 19, 22, 99, 255)
    )
    check_feeds(data + message_chunks(0, 6, b"v"), [MediaReceived(1, VIDEO, 0, b"v")])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (amf0.encode(1.0, 2.0), "^RTMP command message does not start with a command name$"),
        (b"", "^RTMP command message does not start with a command name$"),
        (amf0.encode("connect", 1.0)[:-2], "^AMF0 number is truncated at offset 11$"),
    ],
)
def test_malformed_commands(body: bytes, message: str) -> None:
    conn = handshaken()
    with pytest.raises(RTMPProtocolError, match=message):
        conn.receive_data(message_chunks(0, 3, body, type_id=20, stream_id=0))


def test_command_depth_limit_is_the_constructor_argument() -> None:
    body = amf0.encode("connect", 1.0, {"a": {"b": {"c": 1.0}}})
    with pytest.raises(RTMPProtocolError, match=r"nested deeper than 2 levels"):
        handshaken(max_amf_depth=2).receive_data(message_chunks(0, 3, body, type_id=20))
    assert (
        len(handshaken(max_amf_depth=3).receive_data(message_chunks(0, 3, body, type_id=20))) == 1
    )


def test_connect_with_enhanced_rtmp_fields_and_odd_values() -> None:
    conn = handshaken()
    [event] = conn.receive_data(
        connect_command(app="live/", fourCcList=["av01", "hvc1", "vp09"], capsEx=15.0)
    )
    assert isinstance(event, ConnectRequested)
    assert event.app == "live"
    assert event.properties["fourCcList"] == ["av01", "hvc1", "vp09"]
    [event] = handshaken().receive_data(command("connect", 1.0, None))
    assert event == ConnectRequested(1.0, "", None, {})


def test_constructor_validates_limits() -> None:
    with pytest.raises(ValueError, match=r"max_message_size must be positive"):
        RTMPServerConnection(max_message_size=0)
    with pytest.raises(ValueError, match=r"out_chunk_size"):
        RTMPServerConnection(out_chunk_size=0)


def test_custom_out_chunk_size_is_used_for_replies() -> None:
    conn = handshaken(out_chunk_size=64)
    out = ServerOutput()
    conn.receive_data(connect_command())
    conn.accept_connect(1.0)
    replies: list[Reply] = out.feed(conn.data_to_send())
    assert replies[2].raw.payload == struct.pack(">I", 64)
    assert replies[3].name == "_result"
