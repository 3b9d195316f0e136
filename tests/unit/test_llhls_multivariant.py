"""The multivariant playlist of a low-latency stream: one variant with the codecs, resolution
and peak bandwidth of its media, on real ffmpeg output and on hand-made fragments."""

from __future__ import annotations

import math

from tests.fmp4_source import AAC, AUDIO, H264, VIDEO, fragmented_mp4
from tests.llhls_support import OTHER_INIT, attr, package, stream
from workers.llhls import LowLatencyStream
from workers.llhls_multivariant import bandwidths, multivariant_playlist


def variant(body: bytes) -> tuple[str, str]:
    """The ``EXT-X-STREAM-INF`` attributes and the URI of a one-variant playlist."""
    lines = body.decode("ascii").splitlines()
    assert lines[0] == "#EXTM3U"
    infs = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(infs) == 1 and infs[0] == len(lines) - 2
    return lines[-2].removeprefix("#EXT-X-STREAM-INF:"), lines[-1]


def test_codecs_resolution_and_bandwidth_of_real_media() -> None:
    s, done, init = package(fragmented_mp4(VIDEO + AUDIO, H264 + AAC, seconds=3))
    body = multivariant_playlist(s, "index.m3u8?x=1")
    assert body is not None
    attributes, uri = variant(body)
    assert uri == "index.m3u8?x=1"
    assert attr(attributes, "CODECS") == init.codecs == "avc1.4d401f,mp4a.40.2"
    assert attr(attributes, "RESOLUTION") == "320x240"
    rates = [8 * len(seg.data) / seg.duration for seg in done]
    assert int(attr(attributes, "BANDWIDTH")) == math.ceil(max(rates)) > 0
    average = 8 * sum(len(seg.data) for seg in done) / sum(seg.duration for seg in done)
    assert int(attr(attributes, "AVERAGE-BANDWIDTH")) == math.ceil(average)


def test_nothing_before_the_first_media() -> None:
    empty = LowLatencyStream(part_target=0.2, segment_target=1.0)
    assert multivariant_playlist(empty, "index.m3u8") is None


def test_bandwidth_of_complete_segments_only_once_there_are_some() -> None:
    s, feeder = stream(part_target=0.5)
    feeder.add(0.5, keyframe=True)  # "[1]": 3 bytes in 0.5 s, not complete, alone
    assert bandwidths(s.segments)[0] == 48
    feeder.add(0.5)
    feeder.add(0.45, keyframe=True)  # completes 6 bytes in 1 s, opens 3 bytes in 0.45 s
    assert [seg.complete for seg in s.segments] == [True, False]
    assert bandwidths(s.segments)[0] == 48


def test_the_codecs_of_the_newest_segment_after_a_reconnect_changed_them() -> None:
    s, feeder = stream()
    feeder.gops(2)
    feeder.run(OTHER_INIT)
    feeder.gops(1)
    body = multivariant_playlist(s, "index.m3u8")
    assert body is not None
    attributes, _ = variant(body)
    assert attr(attributes, "CODECS") == "hvc1.1.6.L93.90"
    assert "RESOLUTION" not in attributes  # a track without width and height
