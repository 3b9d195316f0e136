"""The multivariant playlist of an adaptive-bitrate stream (RFC 8216 4.3.4.2), and what each
variant declares: bandwidth measured from its segments, resolution, codecs and frame rate.

Audio is muxed into every variant (the same copied packets), the way every HLS client plays
without an ``EXT-X-MEDIA`` group. Pure: the caller measures the segments and writes the text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.stats import AudioTrack, VideoTrack
from workers.renditions import H264_MAIN_PROFILE_IDC, Rung, scaled_width

MP3_CODEC_STRING = "mp4a.40.34"
"""MPEG-1/2 Layer III audio in HLS (RFC 6381 3.3, object type 0x40, MP3's audio type 34)."""


@dataclass(frozen=True)
class Variant:
    """One ``EXT-X-STREAM-INF`` entry."""

    uri: str
    bandwidth: int
    """Peak segment bit rate, bits per second (RFC 8216 4.3.4.2)."""
    average_bandwidth: int
    """Average segment bit rate, bits per second."""
    resolution: tuple[int, int] | None
    codecs: str | None
    """Comma-separated RFC 6381 codec strings; ``None``: left out (a codec we cannot name)."""
    frame_rate: float | None


def segment_bandwidth(sizes_and_durations: Sequence[tuple[int, float]]) -> tuple[int, int]:
    """Peak and average bits per second of segments given as ``(bytes, seconds)``; ``(0, 0)``
    for none."""
    timed = [(size, seconds) for size, seconds in sizes_and_durations if seconds > 0]
    if not timed:
        return 0, 0
    peak = max(size * 8 / seconds for size, seconds in timed)
    average = sum(size for size, _ in timed) * 8 / sum(seconds for _, seconds in timed)
    return math.ceil(peak), math.ceil(average)


def audio_codec_string(audio: AudioTrack | None) -> str | None:
    """RFC 6381 string of the (copied) audio: ``mp4a.40.<object type>`` for AAC, MP3's; ``None``
    for another codec."""
    if audio is None:
        return None
    if audio.codec == "aac":
        return f"mp4a.40.{audio.object_type or 2}"
    if audio.codec == "mp3":
        return MP3_CODEC_STRING
    return None


def rung_video_codec_string(rung: Rung) -> str:
    """What libx264 writes for a rung: Main profile (with ``constraint_set1_flag``, as x264 sets
    it for Main) at the rung's level."""
    level = round(float(rung.level) * 10)
    return f"avc1.{H264_MAIN_PROFILE_IDC:02X}40{level:02X}"


def join_codecs(video: str | None, audio: str | None, *, has_audio: bool) -> str | None:
    """The ``CODECS`` value, or ``None`` when a track's codec cannot be named (RFC 8216 says
    every codec present must be listed, so a partial list would be wrong)."""
    if video is None or (has_audio and audio is None):
        return None
    return ",".join(c for c in (video, audio) if c)


def source_resolution(video: VideoTrack | None) -> tuple[int, int] | None:
    """The source's picture size, if known."""
    if video is None or not video.width or not video.height:
        return None
    return video.width, video.height


def rung_resolution(rung: Rung, video: VideoTrack | None) -> tuple[int, int]:
    """A rung's picture size for this source."""
    size = source_resolution(video)
    width = scaled_width(rung, *(size or (None, None)))
    return width, rung.height


def render_multivariant(variants: Sequence[Variant]) -> str:
    """The multivariant playlist listing ``variants`` in the given order (highest first: the
    first is where a player without a bandwidth estimate starts)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in variants:
        attributes = [
            f"BANDWIDTH={variant.bandwidth}",
            f"AVERAGE-BANDWIDTH={variant.average_bandwidth}",
        ]
        if variant.codecs is not None:
            attributes.append(f'CODECS="{variant.codecs}"')
        if variant.resolution is not None:
            attributes.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        if variant.frame_rate:
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attributes), variant.uri]
    return "\n".join(lines) + "\n"
