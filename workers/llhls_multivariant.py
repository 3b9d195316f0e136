"""The multivariant playlist of a low-latency stream (RFC 8216bis 4.4.6): one variant, its
media playlist, with the ``CODECS`` of its initialization segment, the ``RESOLUTION`` of its
video track and its peak ``BANDWIDTH``, so that a player knows before it loads any media
whether it can play the stream (an AV1 or HEVC stream, say).

The live path serves it beside the media playlist; the media playlist stays the stream's
``downstreamUrl``. With more than one rendition of a stream, this is the playlist that would
list them all.
"""

from __future__ import annotations

from collections.abc import Collection

from workers.fmp4 import InitSegment
from workers.llhls import LowLatencyStream, Segment


def peak_bandwidth(segments: Collection[Segment]) -> int:
    """Bits per second of the complete segment with the highest bit rate (RFC 8216bis
    4.4.6.2: ``BANDWIDTH`` is the peak segment bit rate), or of the one being filled before
    any is complete (its first part, a keyframe, alone would overstate it); 0 without media."""
    complete = [segment for segment in segments if segment.complete]
    peak = 0.0
    for segment in complete or segments:
        duration = segment.duration
        if duration > 0:
            peak = max(peak, 8 * sum(len(part.data) for part in segment.parts) / duration)
    return round(peak)


def stream_inf(init: InitSegment, bandwidth: int) -> str:
    """The ``EXT-X-STREAM-INF`` tag of a variant whose media needs ``init``."""
    attributes = [f"BANDWIDTH={max(bandwidth, 1)}"]
    if init.codecs:
        attributes.append(f'CODECS="{init.codecs}"')
    video = init.video
    if video is not None and video.width and video.height:
        attributes.append(f"RESOLUTION={video.width}x{video.height}")
    return "#EXT-X-STREAM-INF:" + ",".join(attributes)


def multivariant_playlist(stream: LowLatencyStream, media_uri: str) -> bytes | None:
    """The multivariant playlist whose one variant is ``media_uri``, the media playlist of
    ``stream``; ``None`` before the stream has media. The codecs are those of the newest
    segment's initialization segment (a reconnect may change them)."""
    if not stream.segments or not stream.maps:
        return None
    init = stream.maps.get(stream.segments[-1].map_id) or stream.maps[max(stream.maps)]
    lines = ["#EXTM3U", stream_inf(init, peak_bandwidth(stream.segments)), media_uri]
    return ("\n".join(lines) + "\n").encode("ascii")
