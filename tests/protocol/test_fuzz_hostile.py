"""Property-based fuzzing of the sans-IO RTMP layer with hostile input (see ``hostile.py``).

Valid publish sessions round-trip; mutated ones (bit flips, insertions, deletions, spliced-in
absurd chunk sizes, message lengths, chunk stream ids and AMF nesting) give events or
RTMPProtocolError, never anything else, with bounded buffering and replies.

CI runs ``max_examples=300`` per property. A long manual run:
``LIVERELAY_FUZZ_EXAMPLES=50000 pytest --timeout=0 tests/protocol/test_fuzz_hostile.py``
(``--timeout=0`` lifts the 120 s per-test limit). Anything that breaks goes into ``corpus/``
(see its README).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.rtmp.events import MediaReceived, PublishRequested
from tests.protocol.helpers import AUDIO, VIDEO
from tests.protocol.hostile import (
    ABSURD_DEPTH,
    NESTING_OPENERS,
    Frame,
    Limits,
    Mutation,
    PublishSession,
    check_split_invariance,
    chunk_stream_flood,
    declared_length_block,
    deep_command_block,
    empty_media_flood,
    expected_media,
    mutate,
    publish_blocks,
    run,
    set_chunk_size_block,
)

FUZZ_EXAMPLES = int(os.environ.get("LIVERELAY_FUZZ_EXAMPLES", "300"))
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ---------------------------------------------------------------------------------

frames = st.builds(
    Frame,
    kind=st.sampled_from([AUDIO, VIDEO]),
    delta=st.sampled_from([0, 21, 23, 33, 1000, 0xFFFFFE]) | st.integers(0, 0xFFFFFE),
    payload=st.sampled_from([b"\xaf\x01\x21", b"\x17\x01" + bytes(300), b""]) | st.binary(),
)
sessions = st.builds(
    PublishSession,
    chunk_size=st.sampled_from([128, 4096, 60]) | st.integers(1, 5000),
    start=st.sampled_from([0, 0xFFFFFE, 0xFFFFFF, 0xFFFFFFF0]),
    frames=st.lists(frames, max_size=12).map(tuple),
    audio_csid=st.sampled_from([4, 63, 64, 319, 320, 65599]),
    video_csid=st.sampled_from([6, 7, 100, 4000]),
)
limits = st.builds(
    Limits,
    max_message_size=st.sampled_from([1, 300, 4096, 1 << 16]) | st.integers(1, 1 << 16),
    max_chunk_size=st.sampled_from([1, 128, 4096, 1 << 16, 0x7FFFFFFF]) | st.integers(1, 1 << 16),
    max_chunk_streams=st.integers(1, 64),
    max_amf_depth=st.integers(1, 100),
)
generous = Limits(max_message_size=1 << 20, max_chunk_size=1 << 20)
"""Room for every valid session the strategies build."""

U32_EDGES = [0, 1, 2, 127, 128, 4096, 0xFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
nasty_blocks = st.one_of(
    st.builds(set_chunk_size_block, st.sampled_from(U32_EDGES) | st.integers(0, 0xFFFFFFFF)),
    st.builds(
        declared_length_block,
        st.sampled_from([0, 1, 299, 300, 301, 4096, 0xFFFFFF]) | st.integers(0, 0xFFFFFF),
        st.sampled_from([1, 4, 8, 9, 18, 20, 22, 0xFF]),
        st.binary(max_size=400),
        st.sampled_from([3, 9, 64, 65599]),
    ),
    st.builds(chunk_stream_flood, st.lists(st.integers(2, 65599), max_size=80)),
    st.builds(
        deep_command_block,
        st.sampled_from([1, 31, 32, 33, 100, 101, 1000]) | st.integers(1, 20_000),
        st.sampled_from(sorted(NESTING_OPENERS)),
        as_data=st.booleans(),
    ),
    st.builds(empty_media_flood, st.integers(0, 5000)),
    st.binary(min_size=1, max_size=64),
)
offsets = st.integers(min_value=0, max_value=1 << 20)
mutations = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), offsets, st.integers(0, 7)),
        st.tuples(st.just("insert"), offsets, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), offsets, st.integers(1, 64)),
        st.tuples(st.just("set"), offsets, st.sampled_from([0x00, 0x03, 0x3F, 0xC3, 0xFF])),
        st.tuples(st.just("duplicate"), offsets, st.integers(1, 256)),
    ),
    min_size=1,
    max_size=6,
)
cuts = st.lists(offsets, max_size=10)


def splice(blocks: list[bytes], inserts: list[tuple[int, bytes]]) -> bytes:
    """``blocks`` with each nasty block inserted before block ``index`` (wrapping)."""
    out = list(blocks)
    for index, block in inserts:
        out.insert(index % (len(out) + 1), block)
    return b"".join(out)


# -- properties ---------------------------------------------------------------------------------


@fuzz
@given(sessions, cuts)
def test_valid_publish_sessions_round_trip(session: PublishSession, cut: list[int]) -> None:
    events, error = check_split_invariance(b"".join(publish_blocks(session)), cut, generous)
    assert error is None
    media = [
        (e.kind, e.timestamp, bytes(e.payload)) for e in events if isinstance(e, MediaReceived)
    ]
    assert media == expected_media(session)
    assert [e.name for e in events if isinstance(e, PublishRequested)] == [session.key]


@fuzz
@given(sessions, mutations, cuts, limits)
def test_mutated_sessions(
    session: PublishSession, changes: list[Mutation], cut: list[int], limit: Limits
) -> None:
    check_split_invariance(mutate(b"".join(publish_blocks(session)), changes), cut, limit)


@fuzz
@given(
    sessions,
    st.lists(st.tuples(st.integers(0, 64), nasty_blocks), min_size=1, max_size=4),
    cuts,
    limits,
)
def test_sessions_with_absurd_messages(
    session: PublishSession, inserts: list[tuple[int, bytes]], cut: list[int], limit: Limits
) -> None:
    check_split_invariance(splice(publish_blocks(session), inserts), cut, limit)


@fuzz
@given(sessions, st.integers(min_value=0), st.binary(max_size=64), limits)
def test_truncated_sessions_then_junk(
    session: PublishSession, at: int, junk: bytes, limit: Limits
) -> None:
    data = b"".join(publish_blocks(session))
    prefix = data[: at % (len(data) + 1)]
    _, error = run(prefix, (), generous)
    assert error is None  # a truncated valid session is just a session waiting for more
    run(prefix + junk, (), limit)


# -- every truncation of one session, and the same session byte by byte -------------------------

ONE_SESSION = PublishSession(
    chunk_size=100,
    start=0xFFFFF0,
    frames=(
        Frame(VIDEO, 0, b"\x17\x00" + bytes(40)),
        Frame(AUDIO, 0, b"\xaf\x00\x12\x10"),
        Frame(VIDEO, 33, b"\x17\x01" + bytes(250)),
        Frame(AUDIO, 21, b"\xaf\x01" + bytes(9)),
        Frame(AUDIO, 21, b"\xaf\x01" + bytes(9)),
        Frame(VIDEO, 33, b"\x27\x01" + bytes(250)),
    ),
    audio_csid=320,
)


def test_every_truncation_is_a_prefix() -> None:
    data = b"".join(publish_blocks(ONE_SESSION))
    full, error = run(data, (), generous)
    assert error is None
    for end in range(len(data) + 1):
        events, error = run(data[:end], (), generous)
        assert error is None, end
        assert events == full[: len(events)], end


def test_byte_by_byte_gives_the_same_events() -> None:
    data = b"".join(publish_blocks(ONE_SESSION))
    whole, _ = run(data, (), generous)
    bytewise, error = run(data, range(len(data)), generous)
    assert error is None
    assert bytewise == whole


@pytest.mark.parametrize("kind", sorted(NESTING_OPENERS))
@pytest.mark.parametrize("depth", [ABSURD_DEPTH])
def test_absurd_amf_nesting_is_a_protocol_error(kind: str, depth: int) -> None:
    _, error = run(b"".join(publish_blocks(PublishSession())[:2]) + deep_command_block(depth, kind))
    assert error is not None and "nested deeper than 32 levels" in error
