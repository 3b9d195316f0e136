"""Closing recordings an unclean end left open (a crash, a node lost, an ownership that moved
on): what storage holds of each is kept, its playlist closed with ``ENDLIST`` and its final
state stored (:mod:`workers.recording`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from workers.m3u8 import parse_media_playlist, playable
from workers.recording import (
    FINAL_WAIT_SECONDS,
    RecordingStore,
    RecordingSummary,
    render_recording,
)
from workers.storage import RecordingFailed, RecordingStorage

log = logging.getLogger(__name__)


async def finalize_unfinished(
    store: RecordingStore,
    storage: RecordingStorage,
    recordings: Sequence[RecordingSummary] | None = None,
) -> list[RecordingSummary]:
    """Close every recording a crash left open (or those of ``recordings``): keep the segments
    its last playlist lists, write it as ``VOD`` with ``ENDLIST`` and mark it ``ready``
    (``failed`` with a reason when nothing playable is left). Returns the final summaries."""
    finished = []
    if recordings is None:
        recordings = await store.unfinished_recordings()
    for unfinished in recordings:
        summary = await finalize_stored(unfinished, storage)
        await store.recording_finished(summary)
        log.warning(
            "recording %s of stream %s was left open by an unclean shutdown; now %s%s",
            summary.recording_id,
            summary.stream_id,
            summary.status,
            f" ({summary.error})" if summary.error else f" ({summary.duration:.1f} s)",
        )
        finished.append(summary)
    return finished


async def finalize_stored(
    unfinished: RecordingSummary, storage: RecordingStorage
) -> RecordingSummary:
    """``unfinished`` closed from what storage holds (see :func:`finalize_unfinished`)."""
    rid = unfinished.recording_id
    stored = await storage.inspect(rid)
    listed = parse_media_playlist(stored.playlist) if stored.playlist else []
    kept = playable(listed, stored.segment_sizes)
    kept_names = {name for s in kept for name in s.files}
    orphans = sorted(set(stored.segment_sizes) - kept_names)
    if orphans:  # stored but never listed: the crash came between link and playlist
        # (an initialization segment a kept segment needs is listed: EXT-X-MAP)
        await storage.remove_segments(rid, orphans)
    if kept and kept[0].discontinuity:
        kept[0] = replace(kept[0], discontinuity=False)
    duration = round(sum(s.duration for s in kept), 3)
    ended_at = stored.modified_at or unfinished.started_at + duration
    closed = replace(
        unfinished,
        ended_at=max(ended_at, unfinished.started_at),
        duration=duration,
        bytes=sum(stored.segment_sizes[name] for name in kept_names),
        segments=len(kept),
    )
    if not kept:
        return replace(
            closed, status="failed", error="the service stopped before a segment was recorded"
        )
    try:
        await storage.write_playlist(rid, render_recording(kept, target=1, ended=True))
    except OSError as exc:
        return replace(closed, status="failed", error=f"could not close the playlist: {exc}")
    try:  # ready once storage holds it; a store that went away leaves it for the next start
        async with asyncio.timeout(FINAL_WAIT_SECONDS):
            await storage.flush(rid)
    except RecordingFailed as exc:
        return replace(closed, status="failed", error=str(exc))
    return replace(closed, status="ready", error=None)
