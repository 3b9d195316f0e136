"""Chunk stream parsing (RTMP 5.3): basic headers, fmt 0-3, extended timestamps, limits."""

from __future__ import annotations

import re

import pytest

from ingest.rtmp.chunks import ChunkReader, ChunkWriter, RawMessage
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import MediaReceived
from tests.protocol.helpers import (
    AUDIO,
    VIDEO,
    check_feeds,
    chunk_header,
    full_limits,
    handshaken,
    message_chunks,
    set_chunk_size,
)


def video(timestamp: int, payload: bytes, stream_id: int = 1) -> MediaReceived:
    return MediaReceived(stream_id=stream_id, kind=VIDEO, timestamp=timestamp, payload=payload)


def read_all(data: bytes, chunk_size: int = 128) -> list[RawMessage]:
    reader = ChunkReader(max_message_size=1 << 24, max_chunk_streams=64)
    reader.chunk_size = chunk_size
    messages: list[RawMessage] = []
    pos = 0
    while True:
        message, pos = reader.read_message(memoryview(data), pos)
        if message is None:
            assert pos == len(data)
            return messages
        messages.append(message)


@pytest.mark.parametrize("csid", [2, 3, 63, 64, 65, 319, 320, 321, 65599])
def test_basic_header_sizes(csid: int) -> None:
    """RTMP 5.3.1.1: 1-byte (2..63), 2-byte (64..319) and 3-byte (64..65599) ids."""
    data = message_chunks(0, csid, b"abc", timestamp=7)
    basic_size = 1 if csid < 64 else 2 if csid < 320 else 3
    assert len(data) == basic_size + 11 + 3
    [message] = read_all(data)
    assert (message.csid, message.timestamp, message.payload) == (csid, 7, b"abc")
    check_feeds(data, [video(7, b"abc")])


def test_header_types_0_to_3_accumulate_deltas() -> None:
    """fmt 0 absolute, fmt 1 delta + length/type, fmt 2 delta only, fmt 3 reuses the delta."""
    data = (
        message_chunks(0, 6, b"a" * 10, timestamp=1000)
        + message_chunks(1, 6, b"b" * 12, timestamp=33)
        + message_chunks(2, 6, b"c" * 12, timestamp=40)
        + message_chunks(3, 6, b"d" * 12)
        + message_chunks(3, 6, b"e" * 12)
    )
    expected = [
        video(1000, b"a" * 10),
        video(1033, b"b" * 12),
        video(1073, b"c" * 12),
        video(1113, b"d" * 12),
        video(1153, b"e" * 12),
    ]
    check_feeds(data, expected)


def test_type_3_after_type_0_uses_its_timestamp_as_delta() -> None:
    """RTMP 5.3.1.2.4: a type 3 chunk after a type 0 one takes its timestamp as the delta."""
    data = message_chunks(0, 4, b"x", timestamp=20) + message_chunks(3, 4, b"y")
    check_feeds(data, [video(20, b"x"), video(40, b"y")])


def test_multi_chunk_message_keeps_its_timestamp() -> None:
    payload = bytes(range(256)) + b"tail" * 20
    data = message_chunks(0, 6, payload, timestamp=500) + message_chunks(1, 6, b"z", timestamp=10)
    check_feeds(data, [video(500, payload), video(510, b"z")])


def test_extended_timestamp_repeated_on_continuation_chunks() -> None:
    """RTMP 5.3.1.3: the extended timestamp is repeated in each type 3 continuation chunk."""
    payload = bytes(range(200)) * 2
    timestamp = 0x01234567
    data = message_chunks(0, 6, payload, timestamp=timestamp)
    assert data.count(timestamp.to_bytes(4, "big")) == 4  # header + 3 continuations
    check_feeds(data, [video(timestamp, payload)])


def test_type_3_new_message_repeats_extended_timestamp_and_delta() -> None:
    """A type 3 chunk starting a message after an extended header carries the extension
    again and adds the previous delta once more (the pyrtmp A/V drift bug)."""
    delta = 0x01000000
    data = (
        message_chunks(0, 6, b"a", timestamp=100)
        + message_chunks(1, 6, b"b" * 300, timestamp=delta)
        + message_chunks(3, 6, b"c" * 300, timestamp=delta)
    )
    expected = [
        video(100, b"a"),
        video(100 + delta, b"b" * 300),
        video(100 + 2 * delta, b"c" * 300),
    ]
    check_feeds(data, expected)


def test_type_3_new_message_after_extended_type_0() -> None:
    timestamp = 0x02000000
    data = message_chunks(0, 6, b"a" * 130, timestamp=timestamp) + message_chunks(
        3, 6, b"b" * 130, timestamp=timestamp
    )
    check_feeds(data, [video(timestamp, b"a" * 130), video(2 * timestamp, b"b" * 130)])


@pytest.mark.parametrize("timestamp", [0xFFFFFF, 0x01000000, 0xFFFFFFFF])
def test_type_3_chunks_without_the_repeated_extended_timestamp(timestamp: int) -> None:
    """Some old senders omit the repetition; like SRS and GStreamer, 4 bytes that differ
    from the stored extended timestamp are taken as payload."""
    first = bytes(range(256))
    second = b"\x17\x01" + bytes(200)
    data = message_chunks(0, 6, first, timestamp=timestamp, repeat_extended=False)
    data += message_chunks(3, 6, second[:256].ljust(256, b"-"), repeat_extended=False)
    assert len(data) == (12 + 4 + 128 + 1 + 128) + (1 + 128 + 1 + 128)  # one extension only
    expected = [
        video(timestamp, first),
        video(2 * timestamp & 0xFFFFFFFF, second[:256].ljust(256, b"-")),
    ]
    check_feeds(data, expected)


def test_timestamps_straddling_0xffffff() -> None:
    """Absolute 0xFFFFF0, deltas crossing 0xFFFFFF, then an absolute extended timestamp."""
    data = (
        message_chunks(0, 6, b"1", timestamp=0xFFFFF0)
        + message_chunks(2, 6, b"2", timestamp=0x0E)  # 0xFFFFFE: still a 24-bit value
        + message_chunks(2, 6, b"3", timestamp=0x01)  # 0xFFFFFF
        + message_chunks(3, 6, b"4")  # 0x1000000
        + message_chunks(0, 6, b"5", timestamp=0x1000010)  # absolute, extended
        + message_chunks(2, 6, b"6", timestamp=0x21)
    )
    expected = [
        video(0xFFFFF0, b"1"),
        video(0xFFFFFE, b"2"),
        video(0xFFFFFF, b"3"),
        video(0x1000000, b"4"),
        video(0x1000010, b"5"),
        video(0x1000031, b"6"),
    ]
    check_feeds(data, expected)


def test_absolute_timestamp_of_exactly_0xffffff_is_extended() -> None:
    data = message_chunks(0, 6, b"x" * 200, timestamp=0xFFFFFF)
    assert chunk_header(0, 6, timestamp=0xFFFFFF, length=200, type_id=VIDEO).endswith(
        b"\x00\xff\xff\xff"
    )
    check_feeds(data, [video(0xFFFFFF, b"x" * 200)])


def test_timestamps_wrap_modulo_2_32() -> None:
    data = message_chunks(0, 6, b"a", timestamp=0xFFFFFFF0) + message_chunks(
        2, 6, b"b", timestamp=0x20
    )
    check_feeds(data, [video(0xFFFFFFF0, b"a"), video(0x10, b"b")])


def test_interleaved_audio_and_video_chunks() -> None:
    """Chunks of a video and an audio message on different chunk streams interleave."""
    video_payload = bytes(range(256)) * 2
    audio_payload = b"\xaf\x01" + b"A" * 200
    v = message_chunks(0, 6, video_payload, timestamp=40)
    a = message_chunks(0, 4, audio_payload, timestamp=41, type_id=AUDIO)
    # v = 4 chunks (12+128, 1+128, 1+128, 1+128), a = 2 chunks (12+128, 1+74)
    data = v[:140] + a[:140] + v[140:269] + a[140:] + v[269:]
    expected = [
        MediaReceived(1, AUDIO, 41, audio_payload),
        video(40, video_payload),
    ]
    check_feeds(data, expected)


def test_zero_length_message() -> None:
    check_feeds(message_chunks(0, 6, b"", timestamp=3), [video(3, b"")])


@pytest.mark.parametrize("size", [1, 7, 4096, 65536, 16 * 1024 * 1024])
def test_set_chunk_size(size: int) -> None:
    payload = bytes(range(256)) * 40
    data = set_chunk_size(size) + message_chunks(0, 6, payload, timestamp=1, chunk_size=size)
    check_feeds(data, [video(1, payload)], start=full_limits)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (0, "RTMP Set Chunk Size 0 is outside 1..16777216"),
        (0x80000000, "RTMP Set Chunk Size 0x80000000 has the top bit set"),
        (0xFFFFFFFF, "RTMP Set Chunk Size 0xffffffff has the top bit set"),
        (16 * 1024 * 1024 + 1, "RTMP Set Chunk Size 16777217 is outside 1..16777216"),
    ],
)
def test_invalid_set_chunk_size(size: int, message: str) -> None:
    conn = full_limits()
    with pytest.raises(RTMPProtocolError, match=f"^{re.escape(message)}$"):
        conn.receive_data(set_chunk_size(size))
    assert conn.close_reason == message
    with pytest.raises(RTMPProtocolError, match=r"RTMP connection is closed"):
        conn.receive_data(b"")


def test_set_chunk_size_above_custom_limit() -> None:
    conn = handshaken(max_chunk_size=1000)
    with pytest.raises(RTMPProtocolError, match=r"^RTMP Set Chunk Size 1001 is outside 1\.\.1000$"):
        conn.receive_data(set_chunk_size(1001))


def test_message_size_limit() -> None:
    """The 24-bit length field allows 16 MiB - 1; the limit is checked on the header."""
    conn = full_limits(max_message_size=1_000_000)
    header = chunk_header(0, 6, length=16_000_000, type_id=VIDEO, stream_id=1)
    with pytest.raises(
        RTMPProtocolError, match=r"^RTMP message of 16000000 bytes exceeds limit 1000000$"
    ):
        conn.receive_data(header)


def test_message_size_limit_applies_to_type_1_headers() -> None:
    conn = handshaken(max_message_size=1000)
    conn.receive_data(message_chunks(0, 6, b"x" * 1000))
    with pytest.raises(RTMPProtocolError, match=r"^RTMP message of 1001 bytes exceeds limit 1000$"):
        conn.receive_data(chunk_header(1, 6, timestamp=1, length=1001, type_id=VIDEO))


def test_unfinished_messages_are_bounded_across_chunk_streams() -> None:
    conn = handshaken(max_message_size=1000)
    first = [message_chunks(0, csid, b"x" * 900)[: 12 + 128 * 3 + 2] for csid in (4, 5, 6)]
    conn.receive_data(first[0] + first[1])  # 2 x 384 bytes buffered
    with pytest.raises(
        RTMPProtocolError, match=r"^RTMP unfinished messages exceed limit 1000 bytes$"
    ):
        conn.receive_data(first[2])


def test_completed_and_aborted_messages_free_the_unfinished_budget() -> None:
    conn = handshaken(max_message_size=1000)
    abort = message_chunks(0, 2, (5).to_bytes(4, "big"), type_id=2, stream_id=0)
    for _ in range(5):
        assert len(conn.receive_data(message_chunks(0, 4, b"x" * 900))) == 1
        conn.receive_data(message_chunks(0, 5, b"y" * 900)[: 12 + 129 * 4 - 1] + abort)


def test_too_many_chunk_streams() -> None:
    conn = handshaken(max_chunk_streams=4)
    for csid in range(3, 7):
        conn.receive_data(message_chunks(0, csid, b"x"))
    with pytest.raises(RTMPProtocolError, match=r"^RTMP peer used more than 4 chunk streams$"):
        conn.receive_data(message_chunks(0, 7, b"x"))


@pytest.mark.parametrize("fmt", [2, 3])
def test_fresh_chunk_stream_needs_a_full_header(fmt: int) -> None:
    conn = handshaken()
    with pytest.raises(RTMPProtocolError, match=f"^RTMP chunk stream 9 starts with a type {fmt}"):
        conn.receive_data(chunk_header(fmt, 9, timestamp=1))


def test_fresh_chunk_stream_may_start_with_type_1() -> None:
    """librtmp sends its first ping on a fresh chunk stream with a type 1 header."""
    check_feeds(message_chunks(1, 9, b"v", timestamp=5), [video(5, b"v", stream_id=0)])


def test_new_header_in_the_middle_of_a_message() -> None:
    conn = handshaken()
    first = message_chunks(0, 6, b"x" * 200)[:140]  # first chunk of 2
    with pytest.raises(
        RTMPProtocolError,
        match=r"^RTMP chunk stream 6 got a type 1 header before its message was complete$",
    ):
        conn.receive_data(first + message_chunks(1, 6, b"y", timestamp=1))


def test_abort_discards_the_partial_message() -> None:
    """RTMP 5.4.2: Abort drops the partly received message of a chunk stream."""
    abort = message_chunks(0, 2, (6).to_bytes(4, "big"), type_id=2, stream_id=0)
    data = (
        message_chunks(0, 6, b"x" * 200, timestamp=1)[:140]
        + abort
        + message_chunks(1, 6, b"y", timestamp=1)
    )
    check_feeds(data, [video(2, b"y")])


@pytest.mark.parametrize("timestamp", [0, 1000, 0xFFFFFE, 0xFFFFFF, 0x12345678])
@pytest.mark.parametrize("csid", [2, 63, 64, 319, 320, 65599])
def test_writer_round_trips_through_reader(timestamp: int, csid: int) -> None:
    writer = ChunkWriter()
    writer.chunk_size = 100
    out = bytearray()
    payload = bytes(range(250))
    writer.write(out, csid=csid, type_id=9, stream_id=3, payload=payload, timestamp=timestamp)
    writer.write(out, csid=csid, type_id=8, stream_id=3, payload=b"", timestamp=timestamp)
    assert read_all(bytes(out), chunk_size=100) == [
        RawMessage(csid, 9, 3, timestamp, payload),
        RawMessage(csid, 8, 3, timestamp, b""),
    ]
