"""Fuzz invariant (as h11's): after a valid handshake, any bytes give events or
RTMPProtocolError, nothing else; and how the bytes are split never changes the outcome."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.rtmp import amf0
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import Event
from tests.protocol.helpers import handshaken, message_chunks

Outcome = tuple[list[Event], str | None]


def run(data: bytes, cuts: list[int]) -> Outcome:
    """Feed ``data`` split at ``cuts``; return the events and the error message, if any."""
    conn = handshaken(max_chunk_streams=8, max_message_size=1 << 16, max_chunk_size=1 << 16)
    events: list[Event] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    try:
        for start, end in itertools.pairwise(bounds):
            events += conn.receive_data(data[start:end])
            conn.data_to_send()
    except RTMPProtocolError as exc:
        assert conn.close_reason == str(exc)
        return events, str(exc)
    return events, None


def check(data: bytes, cuts: list[int]) -> None:
    whole_events, whole_error = run(data, [])
    split_events, split_error = run(data, cuts)
    assert whole_error == split_error
    if whole_error is None:
        assert whole_events == split_events
    else:  # events of the failing call are lost; those before are a prefix
        assert whole_events == []
        assert all(isinstance(event, Event) for event in split_events)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes(data: bytes, cuts: list[int]) -> None:
    check(data, cuts)


amf_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["connect", "publish", "createStream", "deleteStream", "onMetaData"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
command_bodies = st.lists(amf_values, min_size=0, max_size=5).map(lambda v: amf0.encode(*v))
messages = st.tuples(
    st.sampled_from([0, 1, 2, 3]),  # fmt of the first chunk
    st.sampled_from([2, 3, 4, 6, 64, 400]),  # csid
    st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22]),  # type id
    st.one_of(st.binary(max_size=300), command_bodies),
    st.sampled_from([0, 33, 0xFFFFFF, 0x1000000, 0xFFFFFFFF]),  # timestamp
    st.booleans(),  # truncate the last byte
)


def encode(message: tuple[int, int, int, bytes, int, bool]) -> bytes:
    fmt, csid, type_id, payload, timestamp, truncate = message
    if type_id == 1 and len(payload) >= 4:  # keep chunk sizes plausible most of the time
        payload = (int.from_bytes(payload[:4], "big") % 5000).to_bytes(4, "big")
    data = message_chunks(fmt, csid, payload, timestamp=timestamp, type_id=type_id)
    return data[:-1] if truncate else data


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=8), st.lists(st.integers(min_value=0), max_size=8))
def test_structured_chunks(message_list: list[Any], cuts: list[int]) -> None:
    check(b"".join(encode(m) for m in message_list), cuts)
