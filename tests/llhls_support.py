"""Helpers of the low-latency HLS tests: a parser of rendered media playlists, a packager
fed from real ffmpeg output, and a feeder of hand-made fragments."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from workers.fmp4 import Fragment, FragmentReader, InitSegment, Track
from workers.llhls import LowLatencyStream, Segment
from workers.llhls_part_target import PART_TARGET

START = 1_800_000_000.0
"""Wall-clock time of the first fragment's start (Unix seconds)."""


@dataclass
class Listed:
    """One segment as a rendered playlist lists it."""

    msn: int
    discontinuity: bool = False
    map: str | None = None
    date_time: float | None = None
    parts: list[tuple[float, str, bool]] = field(default_factory=list)
    duration: float | None = None
    uri: str | None = None


@dataclass
class Playlist:
    tags: dict[str, str]
    segments: list[Listed]
    hint: str | None
    ended: bool


def parse(text: str) -> Playlist:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    tags: dict[str, str] = {}
    segments: list[Listed] = []
    hint, ended = None, False
    msn = None
    current: Listed | None = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name == "#EXT-X-MEDIA-SEQUENCE":
            msn = int(value)
        elif name == "#EXT-X-SKIP":
            assert msn is not None
            msn += int(value.removeprefix("SKIPPED-SEGMENTS="))
        if name in (
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-MAP",
            "#EXT-X-PROGRAM-DATE-TIME",
            "#EXT-X-PART",
        ):
            if current is None:
                assert msn is not None
                current = Listed(msn)
            if name == "#EXT-X-DISCONTINUITY":
                current.discontinuity = True
            elif name == "#EXT-X-MAP":
                current.map = attr(value, "URI")
            elif name == "#EXT-X-PROGRAM-DATE-TIME":
                current.date_time = datetime.fromisoformat(value).timestamp()
            else:
                independent = "INDEPENDENT=YES" in value
                current.parts.append(
                    (float(attr(value, "DURATION")), attr(value, "URI"), independent)
                )
        elif name == "#EXTINF":
            assert current is not None
            current.duration = float(value.rstrip(","))
        elif not line.startswith("#"):
            assert current is not None and msn is not None
            current.uri = line
            segments.append(current)
            current, msn = None, msn + 1
        elif name == "#EXT-X-PRELOAD-HINT":
            hint = attr(value, "URI")
        elif name == "#EXT-X-ENDLIST":
            ended = True
        else:
            tags[name] = value
    if current is not None:
        segments.append(current)  # the segment being filled: parts only
    return Playlist(tags, segments, hint, ended)


def attr(value: str, key: str) -> str:
    match = re.search(rf'(?:^|,){key}=("[^"]*"|[^,]*)', value)
    assert match, (key, value)
    return match.group(1).strip('"')


def package(data: bytes, **options: float) -> tuple[LowLatencyStream, list[Segment], InitSegment]:
    """Feed real ffmpeg output through the reader into a stream; returns it, the completed
    segments and the init segment."""
    stream = LowLatencyStream(
        part_target=options.get("part_target", PART_TARGET),
        segment_target=options.get("segment_target", 1.0),
        window_segments=int(options.get("window_segments", 12)),
    )
    done: list[Segment] = []
    init = None
    for event in FragmentReader().feed(data):
        if isinstance(event, InitSegment):
            init = event
            done += stream.start_run(event)
        else:
            done += stream.add(event, START + event.decode_time + event.duration)
    assert init is not None
    return stream, done, init


INIT = InitSegment(b"init-a", (Track(1, "video", 90000, "avc1.4d401f"),))
OTHER_INIT = InitSegment(b"init-b", (Track(1, "video", 90000, "hvc1.1.6.L93.90"),))


class Feeder:
    """Hand-made fragments with chosen durations and keyframes, back to back."""

    def __init__(self, stream: LowLatencyStream) -> None:
        self.stream = stream
        self.time = 0.0
        self.sequence = 0
        self.done: list[Segment] = []

    def run(self, init: InitSegment = INIT) -> None:
        self.done += self.stream.start_run(init)
        self.time = 0.0

    def add(self, duration: float, keyframe: bool = False, count: int = 1) -> None:
        for _ in range(count):
            self.sequence += 1
            data = f"[{self.sequence}]".encode()
            fragment = Fragment(data, self.sequence, (), keyframe, duration, self.time)
            self.time += duration
            self.done += self.stream.add(fragment, START + self.time)

    def gops(self, count: int, *, gop: float = 1.0, part: float = 0.2) -> None:
        """``count`` keyframe intervals of ``gop`` seconds in parts of ``part`` seconds."""
        for _ in range(count):
            parts = round(gop / part)
            self.add(part, keyframe=True)
            self.add(part, count=parts - 1)


def stream(**options: float) -> tuple[LowLatencyStream, Feeder]:
    s = LowLatencyStream(
        part_target=options.get("part_target", 0.2),
        segment_target=options.get("segment_target", 1.0),
        window_segments=int(options.get("window_segments", 12)),
    )
    feeder = Feeder(s)
    feeder.run()
    return s, feeder


def check_conformance(text: str) -> Playlist:
    """Assert the RFC 8216bis rules a live low-latency media playlist must keep (the rules
    ``tests/unit/test_llhls.py`` checks one by one); returns the parsed playlist."""
    playlist = parse(text)
    tags = playlist.tags
    assert tags["#EXT-X-VERSION"] == "9"
    target = int(tags["#EXT-X-TARGETDURATION"])
    part_target = float(attr(tags["#EXT-X-PART-INF"], "PART-TARGET"))
    control = tags["#EXT-X-SERVER-CONTROL"]
    assert attr(control, "CAN-BLOCK-RELOAD") == "YES"
    assert float(attr(control, "PART-HOLD-BACK")) >= round(3 * part_target, 3)
    assert float(attr(control, "CAN-SKIP-UNTIL")) >= 6 * target
    assert playlist.segments, text
    assert playlist.segments[0].map is not None, "EXT-X-MAP before the first segment"
    assert all(seg.date_time is not None for seg in playlist.segments)
    for seg in playlist.segments:
        if seg.duration is not None:
            assert round(seg.duration) <= target, seg
        assert all(d <= part_target for d, _, _ in seg.parts), seg
        short = [d < 0.85 * part_target and not ind for d, _, ind in seg.parts[:-1]]
        assert not any(short), seg
    if not playlist.ended:
        assert playlist.hint is not None, "EXT-X-PRELOAD-HINT while live"
    return playlist
