"""One test per weakness hostile input found in the sans-IO RTMP layer (each written before its
fix), plus the limits every connection reports."""

from __future__ import annotations

from tests.protocol.helpers import AUDIO, handshaken, message_chunks


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
