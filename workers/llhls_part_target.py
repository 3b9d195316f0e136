"""The part target of low-latency HLS (RFC 8216bis ``EXT-X-PART-INF:PART-TARGET``), chosen to
fit the fragments ffmpeg writes at the frame and sample rates publishers use.

ffmpeg's mp4 muxer (``-frag_duration F``) ends a fragment at the first sample whose decode time
is at least ``F`` past the fragment's first: a fragment holds ``ceil(F / d)`` samples of
duration ``d`` of the track that reaches ``F`` first, video when there is one. Fragments cannot
be split, so the part target must be at least the longest fragment, and every part but an
independent one or the last of a segment must fill 85 % of it (iOS refuses shorter ones). The
player waits ``PART-HOLD-BACK``, three part targets, behind the live edge, so every millisecond
of headroom costs three of glass-to-glass latency.

One target for every stream rather than one per stream: ``PART-TARGET`` cannot change while a
playlist is live, and a publisher may reconnect at another frame rate into the same playlist.
With ``F`` = 0.2 s, 25, 30, 50 and 60 fps give 0.2 s fragments, 29.97 and 59.94 fps 0.2002 s,
and 24 and 23.976 fps 0.2083 and 0.2085 s: :data:`PART_TARGET` is 0.209 s, which every common
frame rate fills to 95 % or more. A stream without video is fragmented at
:data:`workers.argv.LOW_LATENCY_AUDIO_FRAGMENT_SECONDS` (0.19 s), so that AAC at 48 kHz (0.192
s fragments) and 44.1 kHz (0.2090 s) fits the same target; at 0.2 s, 48 kHz would give 0.2133 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from workers.argv import LOW_LATENCY_AUDIO_FRAGMENT_SECONDS, LOW_LATENCY_FRAGMENT_SECONDS

SHORT_PART = 0.85
"""Parts shorter than this share of the part target may only end a segment or be independent."""

VIDEO_FRAME_RATES = (24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 50.0, 60000 / 1001, 60.0)
"""Frame rates :data:`PART_TARGET` is chosen for (frames per second)."""
AAC_SAMPLE_RATES = (44100, 48000)
"""AAC sample rates (1024 samples a frame) it is chosen for, in streams without video."""
AAC_FRAME_SAMPLES = 1024


def fragment_duration(fragment_seconds: float, sample_seconds: float) -> float:
    """How long ffmpeg's fragments of samples lasting ``sample_seconds`` are with
    ``-frag_duration`` ``fragment_seconds``: whole samples up to the first at or past it."""
    samples = math.ceil(fragment_seconds / sample_seconds - 1e-9)
    return samples * sample_seconds


def part_target_for(fragments: Iterable[float]) -> float:
    """The smallest part target, in whole milliseconds, that holds every fragment duration in
    ``fragments``."""
    return math.ceil(max(fragments) * 1000 - 1e-6) / 1000


def common_fragments() -> list[float]:
    """The fragment durations of the common frame rates (with video) and AAC sample rates
    (without), at the low-latency fragment durations."""
    video = [fragment_duration(LOW_LATENCY_FRAGMENT_SECONDS, 1 / r) for r in VIDEO_FRAME_RATES]
    audio = [
        fragment_duration(LOW_LATENCY_AUDIO_FRAGMENT_SECONDS, AAC_FRAME_SAMPLES / r)
        for r in AAC_SAMPLE_RATES
    ]
    return video + audio


PART_TARGET = part_target_for(common_fragments())
"""The part target every low-latency stream declares: 0.209 s (``PART-HOLD-BACK`` 0.627 s)."""
