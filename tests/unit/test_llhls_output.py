"""The low-latency output's side that readers see: waiting for a part wakes on the change that
brings it (no polling), is bounded, and an ended playlist is kept for a while after its path
ended. The ffmpeg side is tested end to end in ``tests/e2e/test_low_latency.py``."""

from __future__ import annotations

import asyncio

from config.settings import Settings
from ingest.hub import StreamHub
from tests.llhls_support import INIT
from workers.fmp4 import Fragment
from workers.llhls_output import EndedOutputs, LowLatencyOutput

STREAM = "0123456789abcdef01234567"


def output() -> LowLatencyOutput:
    hub = StreamHub(STREAM, queue_bytes=1 << 20)
    return LowLatencyOutput(Settings(), ffmpeg="ffmpeg", hub=hub)


def fragment(sequence: int, keyframe: bool = True) -> Fragment:
    return Fragment(b"[%d]" % sequence, sequence, (), keyframe, 0.2, 0.2 * sequence)


async def test_a_waiting_reader_wakes_when_its_part_comes() -> None:
    out = output()
    stream = out.stream
    waiting = asyncio.ensure_future(out.wait_for(lambda: stream.part(0) is not None, 60))
    await asyncio.sleep(0)
    assert not waiting.done()
    stream.start_run(INIT)
    out.notify_changed()
    await asyncio.sleep(0)
    assert not waiting.done(), "a change that does not bring the part does not answer"
    stream.add(fragment(0), 1.0)
    out.notify_changed()
    assert await waiting is True


async def test_a_wait_is_bounded_and_an_end_answers_it() -> None:
    out = output()
    assert await out.wait_for(lambda: out.stream.part(0) is not None, 0.01) is False
    waiting = asyncio.ensure_future(out.wait_for(lambda: out.stream.part(5) is not None, 60))
    await asyncio.sleep(0)
    await out.stop(timeout=1)
    assert await waiting is False
    assert out.stream.ended and out.ended_at is not None


async def test_an_ended_output_is_kept_for_the_linger_only() -> None:
    now = [100.0]
    ended = EndedOutputs(linger=10, clock=lambda: now[0])
    live = output()
    ended.remember(STREAM, live)
    assert ended.get(STREAM) is None, "a live output is served from its path, not from here"
    await live.stop(timeout=1)
    assert live.ended_at is not None
    now[0] = live.ended_at + 9
    assert ended.get(STREAM) is live
    now[0] = live.ended_at + 11
    assert ended.get(STREAM) is None
    assert ended.get("other") is None


def test_a_delta_update_skips_segments_under_the_default_settings() -> None:
    """With the default live window (6 segments of 2 s) every segment ended less than
    CAN-SKIP-UNTIL (6 target durations) before the playlist's end, so ``_HLS_skip=YES`` got the
    full playlist: the low-latency window keeps enough segments for a delta update to skip."""
    out = output()
    stream = out.stream
    stream.start_run(INIT)
    for sequence in range(40 * 10):  # 80 s of 2 s segments, 0.2 s parts
        stream.add(fragment(sequence, keyframe=sequence % 10 == 0), 1.0 + 0.2 * sequence)
    delta = out.playlists.get(skip=True).decode()
    skipped = [line for line in delta.splitlines() if line.startswith("#EXT-X-SKIP:")]
    assert skipped and int(skipped[0].removeprefix("#EXT-X-SKIP:SKIPPED-SEGMENTS=")) > 0
    assert len(delta) < len(out.playlists.get(skip=False))
