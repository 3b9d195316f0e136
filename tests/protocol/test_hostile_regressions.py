"""One test per weakness hostile input found in the sans-IO RTMP layer (each written before its
fix), plus the limits every connection reports."""

from __future__ import annotations

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import PublishRequested
from tests.protocol.helpers import (
    AUDIO,
    C0C1,
    C2,
    command,
    handshaken,
    message_chunks,
    stream_created,
)
from tests.protocol.hostile import ABSURD_DEPTH, Limits, deep_command_block, run


def test_buffered_bytes_counts_a_partial_chunk_and_unfinished_messages() -> None:
    conn = handshaken()
    message = message_chunks(0, 4, bytes(300), type_id=AUDIO)  # 128 + 128 + 44 in 3 chunks
    conn.receive_data(message[:140])  # first chunk (12 + 128) done, second not started
    assert conn.buffered_bytes == 128
    conn.receive_data(message[140:150])  # 10 bytes of the second chunk wait in the buffer
    assert conn.buffered_bytes == 138
    conn.receive_data(message[150:])
    assert conn.buffered_bytes == 0


def test_consumed_bytes_are_not_kept_between_calls() -> None:
    # Found by the mutation fuzzer: with a byte pending, a large input that was parsed all but
    # its last byte stayed in memory until the next call (up to the read size per connection).
    conn = handshaken()
    media = message_chunks(0, 4, bytes(100), type_id=AUDIO)
    conn.receive_data(media[:1])
    conn.receive_data(media[1:] + media * 500 + media[:1])
    assert conn.buffered_bytes == 1


def test_publishes_on_ever_new_message_streams_are_a_protocol_error() -> None:
    # Each publish name was remembered until its unpublish: a peer sending publish on new
    # message stream ids without end grew the connection's memory without bound.
    conn = stream_created()
    conn.receive_data(command("publish", 0.0, None, "key1", "live", stream_id=1, csid=8))
    conn.accept_publish(1)  # once publishing, further publishes do not pause parsing
    publishes = b"".join(
        command("publish", 0.0, None, f"key{i}", "live", stream_id=i, csid=8) for i in range(2, 9)
    )
    events = conn.receive_data(publishes)
    assert len([e for e in events if isinstance(e, PublishRequested)]) == 7
    ninth = command("publish", 0.0, None, "key9", "live", stream_id=9, csid=8)
    with pytest.raises(RTMPProtocolError, match="RTMP peer publishes on more than 8 streams"):
        conn.receive_data(ninth)


def test_publishing_again_on_the_same_stream_is_not_counted_twice() -> None:
    conn = stream_created()
    again = command("publish", 0.0, None, "key", "live", stream_id=1, csid=8)
    conn.receive_data(again)
    conn.accept_publish(1)  # once publishing, further publishes do not pause parsing
    for _ in range(20):
        [event] = conn.receive_data(again)
        assert event == PublishRequested(1, 0.0, "key", "live")
    # Stream 1 counts once: seven new streams still fit under the limit of 8, the next does not.
    others = b"".join(
        command("publish", 0.0, None, f"key{i}", "live", stream_id=i, csid=8) for i in range(2, 9)
    )
    assert len(conn.receive_data(others)) == 7
    ninth = command("publish", 0.0, None, "key9", "live", stream_id=9, csid=8)
    with pytest.raises(RTMPProtocolError, match="RTMP peer publishes on more than 8 streams"):
        conn.receive_data(ninth)


def test_amf_depth_limit_is_capped_below_the_recursion_limit() -> None:
    # With max_amf_depth=200 a deeply nested command raised RecursionError, not
    # RTMPProtocolError: the decoder recurses about four frames per level.
    with pytest.raises(ValueError, match=r"max_amf_depth must be in 1\.\.100"):
        RTMPServerConnection(max_amf_depth=101)
    with pytest.raises(ValueError, match=r"max_depth must be in 1\.\.100"):
        amf0.AMF0Decoder(b"", max_depth=101)


@pytest.mark.parametrize("kind", ["strict_array", "object", "ecma_array", "typed_object"])
def test_deepest_allowed_amf_nesting_is_a_protocol_error_past_it(kind: str) -> None:
    limits = Limits(max_amf_depth=100)
    _, error = run(C0C1 + C2 + deep_command_block(ABSURD_DEPTH, kind), limits=limits)
    assert error is not None and "nested deeper than 100 levels" in error
