"""NetConnection/NetStream commands: the publish flow of ffmpeg, OBS and GStreamer, checked
reply by reply (decoded with our own chunk reader and AMF0 decoder)."""

from __future__ import annotations

import struct

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.amf0 import UNDEFINED, ECMAArray
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import (
    ConnectRequested,
    Event,
    HandshakeCompleted,
    MediaReceived,
    MetadataReceived,
    PublishRequested,
    StreamCreated,
    UnpublishRequested,
)
from tests.protocol.helpers import (
    AUDIO,
    C0C1,
    C2,
    DATA,
    ERROR_JUNK,
    ERROR_JUNK_MESSAGE,
    PENDING_JUNK,
    VIDEO,
    ServerOutput,
    command,
    connect_command,
    connected,
    handshaken,
    message_chunks,
    set_chunk_size,
    stream_created,
)
from tests.protocol.hostile import run

KEY = "sk_live_123"
CONNECT_PROPERTIES = {
    "app": "live",
    "type": "nonprivate",
    "flashVer": "FMLE/3.0 (compatible; Lavf61.7.100)",
    "tcUrl": "rtmp://127.0.0.1:1935/live",
}
METADATA = ECMAArray(width=1280.0, height=720.0, videocodecid=7.0, encoder="Lavf61.7.100")
SET_DATA_FRAME = amf0.encode("@setDataFrame", "onMetaData", METADATA)
ON_METADATA = amf0.encode("onMetaData", METADATA)
VIDEO_SEQUENCE_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1" + b"\x00" * 30
AUDIO_SEQUENCE_HEADER = b"\xaf\x00\x12\x10"
AUDIO_FRAME = b"\xaf\x01\x21\x10"  # same length as the sequence header: fmt 2 reuses it
KEYFRAME = b"\x17\x01\x00\x00\x00" + bytes(range(256)) * 40


def publish_commands() -> bytes:
    """What ffmpeg sends after connect, up to publish (publish on message stream 1)."""
    return (
        command("releaseStream", 2.0, None, KEY)
        + command("FCPublish", 3.0, None, KEY)
        + command("createStream", 4.0, None)
        + command("publish", 5.0, None, KEY, "live", stream_id=1, csid=8)
    )


def media_messages() -> bytes:
    return (
        message_chunks(0, 4, SET_DATA_FRAME, type_id=DATA, chunk_size=4096)
        + message_chunks(0, 6, VIDEO_SEQUENCE_HEADER, chunk_size=4096)
        + message_chunks(0, 4, AUDIO_SEQUENCE_HEADER, type_id=AUDIO, chunk_size=4096)
        + message_chunks(1, 6, KEYFRAME, timestamp=33, chunk_size=4096)
        + message_chunks(2, 4, AUDIO_FRAME, timestamp=23, chunk_size=4096)
        + message_chunks(3, 6, KEYFRAME, chunk_size=4096)
    )


def unpublish_commands() -> bytes:
    return command("FCUnpublish", 6.0, None, KEY) + command("deleteStream", 7.0, None, 1.0)


def expected_media_events() -> list[Event]:
    return [
        MetadataReceived(1, dict(METADATA), ON_METADATA),
        MediaReceived(1, VIDEO, 0, VIDEO_SEQUENCE_HEADER),
        MediaReceived(1, AUDIO, 0, AUDIO_SEQUENCE_HEADER),
        MediaReceived(1, VIDEO, 33, KEYFRAME),
        MediaReceived(1, AUDIO, 23, AUDIO_FRAME),
        MediaReceived(1, VIDEO, 66, KEYFRAME),
    ]


def test_full_publish_flow_replies() -> None:
    conn = handshaken()
    out = ServerOutput()

    [connect] = conn.receive_data(connect_command() + set_chunk_size(4096))
    assert connect == ConnectRequested(
        transaction_id=1.0,
        app="live",
        tc_url="rtmp://127.0.0.1:1935/live",
        properties=CONNECT_PROPERTIES,
    )
    assert conn.data_to_send() == b""  # nothing until the session decides
    conn.accept_connect(connect.transaction_id)
    window, bandwidth, chunk_size, result = out.feed(conn.data_to_send())
    assert (window.raw.type_id, window.raw.payload) == (5, struct.pack(">I", 2_500_000))
    assert (bandwidth.raw.type_id, bandwidth.raw.payload) == (6, struct.pack(">IB", 2_500_000, 2))
    assert (chunk_size.raw.type_id, chunk_size.raw.payload) == (1, struct.pack(">I", 4096))
    assert all(r.raw.csid == 2 and r.raw.stream_id == 0 for r in (window, bandwidth, chunk_size))
    assert result.raw.stream_id == 0
    assert result.values == [
        "_result",
        1.0,
        {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
        {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": 0.0,
        },
    ]

    events = conn.receive_data(publish_commands())
    assert events == [
        StreamCreated(1),
        PublishRequested(stream_id=1, transaction_id=5.0, name=KEY, publish_type="live"),
    ]
    release, fc_publish, on_fc_publish, create = out.feed(conn.data_to_send())
    assert release.values == ["_result", 2.0, None, UNDEFINED]
    assert fc_publish.values == ["_result", 3.0, None, UNDEFINED]
    assert on_fc_publish.name == "onFCPublish"
    assert on_fc_publish.values[3]["code"] == "NetStream.Publish.Start"
    assert create.values == ["_result", 4.0, None, 1.0]

    conn.accept_publish(1)
    stream_begin, on_status = out.feed(conn.data_to_send())
    assert (stream_begin.raw.type_id, stream_begin.raw.stream_id) == (4, 0)
    assert stream_begin.raw.payload == b"\x00\x00\x00\x00\x00\x01"  # StreamBegin(1)
    assert (on_status.raw.type_id, on_status.raw.stream_id) == (20, 1)  # on the publish's stream
    assert on_status.values == [
        "onStatus",
        0.0,
        None,
        {
            "level": "status",
            "code": "NetStream.Publish.Start",
            "description": f"{KEY} is now published.",
            "details": KEY,
        },
    ]

    assert conn.receive_data(media_messages()) == expected_media_events()
    assert conn.receive_data(unpublish_commands()) == [UnpublishRequested(1, "FCUnpublish")]
    [fc_unpublish] = out.feed(conn.data_to_send())
    assert fc_unpublish.values == ["_result", 6.0, None, UNDEFINED]


def test_whole_client_stream_whole_bytewise_and_with_junk() -> None:
    data = (
        connect_command()
        + set_chunk_size(4096)
        + publish_commands()
        + media_messages()
        + unpublish_commands()
    )
    expected = [
        ConnectRequested(1.0, "live", "rtmp://127.0.0.1:1935/live", CONNECT_PROPERTIES),
        StreamCreated(1),
        PublishRequested(1, 5.0, KEY, "live"),
        *expected_media_events(),
        UnpublishRequested(1, "FCUnpublish"),
    ]
    # Fed like a session does: answering connect and publish, and reading on after the
    # publish (which pauses parsing until it is answered).
    data = C0C1 + C2 + data
    expected = [HandshakeCompleted(), *expected]
    assert run(data) == (expected, None)
    assert run(data, range(len(data))) == (expected, None)
    for junk in PENDING_JUNK:
        assert run(data + junk) == (expected, None)
    assert run(data + ERROR_JUNK) == (expected, ERROR_JUNK_MESSAGE)


def test_gstreamer_style_publish_with_transaction_id_zero() -> None:
    """rtmp2sink sends releaseStream/FCPublish with transaction id 0 and waits for onStatus
    on the message stream it published on."""
    conn = handshaken()
    out = ServerOutput()
    conn.receive_data(connect_command())
    conn.accept_connect(1.0)
    out.feed(conn.data_to_send())
    events = conn.receive_data(
        command("releaseStream", 0.0, None, KEY)
        + command("FCPublish", 0.0, None, KEY)
        + command("createStream", 2.0, None)
        + command("publish", 0.0, None, KEY, "live", stream_id=1)
    )
    assert events == [StreamCreated(1), PublishRequested(1, 0.0, KEY, "live")]
    replies = out.feed(conn.data_to_send())
    assert [r.name for r in replies] == ["onFCPublish", "_result"]
    conn.accept_publish(1)
    [_, on_status] = out.feed(conn.data_to_send())
    assert (on_status.name, on_status.raw.stream_id) == ("onStatus", 1)


def test_second_created_stream_answers_on_its_own_stream_id() -> None:
    conn = connected()
    out = ServerOutput()
    events = conn.receive_data(
        command("createStream", 2.0, None)
        + command("createStream", 3.0, None)
        + command("publish", 4.0, None, "k?token=abc&x=1", stream_id=2)
    )
    assert events == [
        StreamCreated(1),
        StreamCreated(2),
        PublishRequested(2, 4.0, "k", "live", query="token=abc&x=1"),
    ]
    out.feed(conn.data_to_send())
    conn.accept_publish(2)
    [stream_begin, on_status] = out.feed(conn.data_to_send())
    assert stream_begin.raw.payload == b"\x00\x00\x00\x00\x00\x02"
    assert on_status.raw.stream_id == 2
    assert on_status.values[3]["details"] == "k"


def test_reject_connect() -> None:
    conn = handshaken()
    out = ServerOutput()
    [connect] = conn.receive_data(connect_command(app="nope/"))
    assert connect.app == "nope"  # type: ignore[attr-defined]
    conn.reject_connect(1.0, "Unknown application.")
    [error] = out.feed(conn.data_to_send())
    assert error.values == [
        "_error",
        1.0,
        None,
        {
            "level": "error",
            "code": "NetConnection.Connect.Rejected",
            "description": "Unknown application.",
        },
    ]
    conn.close("connect rejected")
    assert conn.close_reason == "connect rejected"
    with pytest.raises(RTMPProtocolError, match=r"RTMP connection is closed: connect rejected"):
        conn.receive_data(b"")


def test_reject_publish_answers_on_the_publish_stream() -> None:
    conn = connected()
    out = ServerOutput()
    conn.receive_data(
        command("createStream", 4.0, None) + command("publish", 5.0, None, "bad", stream_id=1)
    )
    out.feed(conn.data_to_send())
    conn.reject_publish(1, description="Invalid stream key.")
    [on_status] = out.feed(conn.data_to_send())
    assert on_status.raw.stream_id == 1
    assert on_status.values == [
        "onStatus",
        0.0,
        None,
        {
            "level": "error",
            "code": "NetStream.Publish.BadName",
            "description": "Invalid stream key.",
        },
    ]
    # A rejected publish is forgotten: deleteStream does not report an unpublish.
    assert conn.receive_data(command("deleteStream", 6.0, None, 1.0)) == []


def test_send_status_on_the_publish_stream() -> None:
    conn = stream_created()
    out = ServerOutput()
    conn.receive_data(command("publish", 5.0, None, KEY, stream_id=1))
    conn.send_status(1, "status", "NetStream.Unpublish.Success", "Stream ended by an operator.")
    conn.send_status(1, "error", "NetStream.Play.Failed", "Playback is not supported.")
    end, failed = out.feed(conn.data_to_send())
    assert end.values[3] == {
        "level": "status",
        "code": "NetStream.Unpublish.Success",
        "description": "Stream ended by an operator.",
    }
    assert failed.values[3]["code"] == "NetStream.Play.Failed"
    assert (end.raw.stream_id, failed.raw.stream_id) == (1, 1)


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        (command("closeStream", 0.0, None, stream_id=1), UnpublishRequested(1, "closeStream")),
        (command("deleteStream", 8.0, None, 1.0), UnpublishRequested(1, "deleteStream")),
        (
            command("deleteStream", 8.0, None, 1.0) + command("FCUnpublish", 9.0, None, KEY),
            UnpublishRequested(1, "deleteStream"),
        ),
    ],
)
def test_unpublish_commands_report_once(commands: bytes, expected: UnpublishRequested) -> None:
    conn = stream_created()
    conn.receive_data(command("publish", 5.0, None, KEY, stream_id=1))
    conn.accept_publish(1)
    assert conn.receive_data(commands) == [expected]
