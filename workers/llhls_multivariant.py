"""The multivariant playlist of a low-latency stream (RFC 8216bis 4.4.6): one variant, its
media playlist, with the ``CODECS`` of its initialization segment, the ``RESOLUTION`` of its
video track and its peak ``BANDWIDTH``, so that a player knows before it loads any media
whether it can play the stream (an AV1 or HEVC stream, say).

The live path serves it beside the media playlist; the media playlist stays the stream's
``downstreamUrl``. A stream with an adaptive-bitrate ladder has its own multivariant playlist
(:func:`workers.llhls_ladder.multivariant`, at ``index.m3u8``); both are rendered by
:func:`workers.ladder_playlist.render_multivariant`.
"""

from __future__ import annotations

from collections.abc import Collection

from workers.ladder_playlist import Variant, render_multivariant, segment_bandwidth
from workers.llhls import LowLatencyStream, Segment


def bandwidths(segments: Collection[Segment]) -> tuple[int, int]:
    """Peak and average bits per second (RFC 8216bis 4.4.6.2: ``BANDWIDTH`` is the peak
    segment bit rate) of the complete segments, or of the one being filled before any is
    complete (its first part, a keyframe, alone would overstate it); ``(0, 0)`` without media."""
    complete = [segment for segment in segments if segment.complete]
    return segment_bandwidth(
        [(sum(len(part.data) for part in s.parts), s.duration) for s in complete or segments]
    )


def multivariant_playlist(stream: LowLatencyStream, media_uri: str) -> bytes | None:
    """The multivariant playlist whose one variant is ``media_uri``, the media playlist of
    ``stream``; ``None`` before the stream has media. The codecs are those of the newest
    segment's initialization segment (a reconnect may change them)."""
    if not stream.segments or not stream.maps:
        return None
    init = stream.maps.get(stream.segments[-1].map_id) or stream.maps[max(stream.maps)]
    peak, average = bandwidths(stream.segments)
    video = init.video
    resolution = (video.width, video.height) if video and video.width and video.height else None
    variant = Variant(
        media_uri, max(peak, 1), max(average, 1), resolution, init.codecs or None, None
    )
    return render_multivariant([variant]).encode("ascii")
