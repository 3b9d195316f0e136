"""When a session's rungs are decided: once, at its first ffmpeg run, from the picture size the
publish has. The hub is ready as soon as the tracks are known, and ``onMetaData`` may declare
video without ``width``/``height`` before the AVC sequence header (which carries the size in its
SPS) arrives; deciding then would give the session no rung. So a session that asks for rungs
waits for the video sequence header, at most :data:`SEQUENCE_HEADER_WAIT_SECONDS`; without one
in time it is source only (logged). A known size, no rung asked for or no video: no wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ingest.hub import StreamHub
from workers.renditions import RUNGS, Rung, produced_rungs

log = logging.getLogger(__name__)

SEQUENCE_HEADER_WAIT_SECONDS = 5.0
"""How long a session with rungs waits for the video sequence header when the hub became ready
without the picture size (a publisher sends it right after ``onMetaData``; well under the
output's stall time, as the source's ffmpeg starts only after it)."""


def _video(hub: StreamHub) -> tuple[bool, int | None]:
    """Whether the publish has video, and its picture height if known."""
    tracks, video = hub.tracks, hub.stats.video
    has_video = video is not None and (tracks is None or tracks.has_video)
    return has_video, video.height if video is not None else None


async def decide_rungs(
    requested: Sequence[str],
    hub: StreamHub,
    *,
    wait_seconds: float = SEQUENCE_HEADER_WAIT_SECONDS,
) -> tuple[Rung, ...]:
    """The rungs a session of ``hub``'s publish produces (never above the source's height),
    after waiting (bounded) for the picture size when rungs are asked for and it is unknown."""
    has_video, height = _video(hub)
    wants_rungs = any(name in RUNGS for name in requested)
    if wants_rungs and has_video and not height and not hub.video_configured.is_set():
        try:
            async with asyncio.timeout(wait_seconds):
                await hub.video_configured.wait()
        except TimeoutError:
            log.warning(
                "stream %s: no video sequence header %.0f s after the tracks were known; the "
                "picture size is unknown, so this session is source only",
                hub.stream_id,
                wait_seconds,
            )
        has_video, height = _video(hub)
    return produced_rungs(requested, has_video=has_video, source_height=height)
