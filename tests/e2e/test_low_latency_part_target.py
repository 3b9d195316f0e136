"""The part target against real ffmpeg: publishers' common frame rates and AAC sample rates,
encoded to FLV (as an RTMP publish reaches the relay) and fragmented by the low-latency
pipeline's own command (:func:`workers.argv.llhls_argv`), fill every part to 85 % of
PART-TARGET and never outrun it (RFC 8216bis 4.4.4.9), but for the independent parts and the
last of each segment, which may be shorter."""

from __future__ import annotations

import subprocess

import pytest

from api.keys import PATHS
from tests.e2e.conftest import LiveServer, Publisher, Sources, push
from tests.polling import eventually
from workers.argv import llhls_argv
from workers.fmp4 import FragmentReader, InitSegment
from workers.llhls import LowLatencyStream
from workers.llhls_output import LowLatencyOutput
from workers.llhls_part_target import PART_TARGET, SHORT_PART

pytestmark = pytest.mark.e2e

SECONDS = 5
VIDEO_RATES = ["24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60"]


def flv(ffmpeg: str, *, rate: str | None, sample_rate: int | None) -> bytes:
    """An encoder's FLV: H.264 at ``rate`` with a 2 s GOP, AAC at ``sample_rate``."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin"]
    if rate:
        argv += ["-f", "lavfi", "-i", f"testsrc=size=160x90:rate={rate}:duration={SECONDS}"]
    if sample_rate:
        argv += ["-f", "lavfi", "-i", f"sine=sample_rate={sample_rate}:duration={SECONDS}"]
    if rate:
        argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        argv += ["-force_key_frames", "expr:gte(t,n_forced*2)", "-sc_threshold", "0"]
    if sample_rate:
        argv += ["-c:a", "aac", "-ar", str(sample_rate)]
    return subprocess.run([*argv, "-f", "flv", "pipe:1"], capture_output=True, check=True).stdout


@pytest.mark.parametrize(
    ("rate", "sample_rate"),
    [(rate, None) for rate in VIDEO_RATES]
    + [("30", 48000), ("30000/1001", 44100), ("24", 48000), ("60", 48000)]
    + [(None, 48000), (None, 44100)],
)
def test_parts_fill_the_part_target(
    ffmpeg_exe: str, rate: str | None, sample_rate: int | None
) -> None:
    argv = llhls_argv(ffmpeg_exe, audio_only=rate is None)
    source = flv(ffmpeg_exe, rate=rate, sample_rate=sample_rate)
    fmp4 = subprocess.run(argv, input=source, capture_output=True, check=True).stdout
    stream = LowLatencyStream(part_target=PART_TARGET, segment_target=2.0, window_segments=99)
    for number, event in enumerate(FragmentReader().feed(fmp4)):
        if isinstance(event, InitSegment):
            stream.start_run(event)
        else:
            stream.add(event, now=float(number))
    stream.end()
    assert stream.overlong_parts == 0
    parts = [part for seg in stream.segments for part in seg.parts]
    assert len(parts) >= SECONDS * 4
    # a run's first part may be longer: ffmpeg lengthens the first video sample by the time
    # audio started before video (workers.llhls)
    assert all(part.duration <= PART_TARGET for part in parts[1:])
    for seg in stream.segments:
        for part in seg.parts[:-1]:
            assert part.independent or part.duration >= SHORT_PART * PART_TARGET, (seg.msn, part)
    if rate is not None:  # video fills 95 % (48 kHz AAC alone: 0.192 s, 92 %)
        regular = [p.duration for seg in stream.segments for p in seg.parts[1:-1]]
        assert min(regular) >= 0.95 * PART_TARGET


@pytest.mark.parametrize("kind", ["av", "audio_only"])
async def test_a_published_stream_has_no_part_over_the_part_target(
    live_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    kind: str,
) -> None:
    """Over RTMP, through the hub (which tells the output whether the stream has video)."""
    stream = await live_server.create_stream(latencyMode="low")
    publishers.append(await push(ffmpeg_exe, getattr(sources, kind), stream["upstreamUrl"]))

    def output() -> LowLatencyOutput | None:
        path = live_server.app[PATHS].get(stream["id"])
        found = path.outputs.hls if path is not None else None
        return found if isinstance(found, LowLatencyOutput) else None

    def segments(count: int) -> bool:
        found = output()
        return found is not None and sum(s.complete for s in found.stream.segments) >= count

    await eventually(lambda: segments(2), 30)
    found = output()
    assert found is not None
    complete = [seg for seg in found.stream.segments if seg.complete]
    parts = [part for seg in complete for part in seg.parts]
    assert found.stream.overlong_parts == 0
    assert all(part.duration <= PART_TARGET for part in parts[1:])
    for seg in complete:
        for part in seg.parts[:-1]:
            assert part.independent or part.duration >= SHORT_PART * PART_TARGET, (seg.msn, part)
