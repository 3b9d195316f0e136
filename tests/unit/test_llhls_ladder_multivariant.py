"""The multivariant playlist of a low-latency ladder is there as soon as the source rendition
has media: a player that starts in a stream's first seconds gets it, not a 404."""

from __future__ import annotations

from ingest.hub import StreamHub
from tests.llhls_support import stream
from workers.llhls_ladder import multivariant


def test_a_ladder_lists_its_source_before_the_first_segment_is_complete() -> None:
    source, feeder = stream(part_target=0.5)
    feeder.add(0.5, keyframe=True)  # the first segment is being filled; none is complete
    assert not any(segment.complete for segment in source.segments)
    hub = StreamHub("s", queue_bytes=1024)
    body = multivariant(hub, source, [])
    assert body is not None
    lines = body.decode().splitlines()
    assert lines[-1] == "source.m3u8" and "BANDWIDTH=48," in lines[-2]
