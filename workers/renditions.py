"""The renditions of an adaptive-bitrate stream: the rung names a stream may ask for, what each
one is encoded as, and which of them a session actually produces.

A stream's ``renditions`` is ``("source",)`` (the publish, copied: what every stream had
before) or ``source`` followed by transcoded rungs, e.g. ``("source", "720p", "480p", "360p")``.
A rung is never upscaled: one whose height is not below the source's is skipped, and so is
every rung of a publish without video or whose picture size is unknown. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SOURCE = "source"
"""The publisher's own rendition, copied without transcoding (recordings keep this one)."""


@dataclass(frozen=True)
class Rung:
    """One transcoded rendition of the ladder: H.264 (libx264) at a fixed height."""

    name: str
    """What the API calls it (``720p``)."""
    height: int
    """Picture height; the width follows the source's aspect ratio (rounded to even)."""
    video_kbps: int
    """Target video bitrate (``-b:v``); ``-maxrate`` is 7 % above it, the VBV buffer 1.5 s."""
    level: str
    """H.264 level passed to the encoder (``-level:v``), as ``3.1``; declared in ``CODECS``.
    High enough for the rung's picture at 60 frames per second (H.264 Table A-1: macroblocks
    per second), so no source frame rate up to 60 breaks the declared level."""

    @property
    def maxrate_kbps(self) -> int:
        """The peak video bitrate the encoder is held to (``-maxrate``)."""
        return round(self.video_kbps * 1.07)

    @property
    def bufsize_kbits(self) -> int:
        """The VBV buffer (``-bufsize``): 1.5 s at the target bitrate."""
        return round(self.video_kbps * 1.5)


RUNGS: dict[str, Rung] = {
    rung.name: rung
    for rung in (
        Rung("1080p", 1080, 5000, "4.2"),
        Rung("720p", 720, 2800, "3.2"),
        Rung("480p", 480, 1400, "3.1"),
        Rung("360p", 360, 800, "3.1"),
        Rung("240p", 240, 400, "3.0"),
    )
}
"""Every rung a stream may ask for, by name, highest first. The bitrates are the usual ones for
H.264 at 30 fps (Apple's HLS authoring guide gives similar steps)."""

H264_PROFILE = "main"
"""The profile every transcoded rung is encoded in (``-profile:v``): played by every HLS
client, B-frames allowed."""
H264_MAIN_PROFILE_IDC = 77
AUDIO_KBPS = 128
"""Bitrate of the AAC audio when the publish's audio is not AAC and is transcoded."""


def rendition_names() -> tuple[str, ...]:
    """Every name a stream's ``renditions`` may list: ``source`` first, then the rungs."""
    return (SOURCE, *RUNGS)


def ladder_problem(renditions: Sequence[str]) -> str | None:
    """Why ``renditions`` is not a valid ladder (``None`` when it is): ``source`` must come
    first, every other name must be a known rung, and no name may repeat."""
    if not renditions or renditions[0] != SOURCE:
        return '"source" must be the first rendition'
    unknown = [name for name in renditions if name != SOURCE and name not in RUNGS]
    if unknown:
        known = ", ".join(rendition_names())
        return f"unknown rendition {unknown[0]!r} (known: {known})"
    if len(set(renditions)) != len(renditions):
        repeated = next(n for n in renditions if renditions.count(n) > 1)
        return f"rendition {repeated!r} is listed twice"
    return None


def encode_renditions(renditions: Iterable[str]) -> str:
    """The ladder as stored in the database: names joined by commas."""
    return ",".join(renditions)


def decode_renditions(stored: str | None) -> tuple[str, ...]:
    """The ladder from its stored form; ``("source",)`` for an empty or missing value."""
    names = tuple(name for name in (stored or "").split(",") if name)
    return names or (SOURCE,)


def produced_rungs(
    requested: Sequence[str], *, has_video: bool, source_height: int | None
) -> tuple[Rung, ...]:
    """The rungs of ``requested`` a session encodes, highest first: none without video or
    when the source's height is unknown, and only those below the source's height (a rung at
    or above it would only upscale or repeat the source's size)."""
    if not has_video or not source_height:
        return ()
    rungs = (RUNGS[name] for name in requested if name in RUNGS)
    return tuple(sorted((r for r in rungs if r.height < source_height), key=lambda r: -r.height))


def scaled_width(rung: Rung, source_width: int | None, source_height: int | None) -> int:
    """The width of ``rung`` for a source of that size (the aspect ratio kept, rounded to even
    as ``scale=-2:h`` does); 16:9 when the source's size is unknown."""
    if not source_width or not source_height:
        source_width, source_height = 16, 9
    return max(2, round(rung.height * source_width / source_height / 2) * 2)
