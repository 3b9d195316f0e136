"""What one recording has waiting for object storage: its segments in order, its newest
playlist, the ETag of its last playlist write, and whether it failed.

Used by :mod:`workers.object_storage`; keeps no I/O of its own beyond the upload task it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.m3u8 import parse_media_playlist
from workers.storage import RecordingFailed, StorageUnavailable

_REMEMBERED_ATTEMPTS = 4
"""Playlist texts sent since the last confirmed write that we still recognise as ours."""


class PlaylistConflict(Exception):
    """The stored playlist is not the one we last wrote: another writer changed it."""


@dataclass(frozen=True)
class WaitingSegment:
    """A segment kept in the local backlog until it is uploaded."""

    path: Path
    size: int


class RecordingUploads:
    """The upload queue of one recording (one task sends it, in order)."""

    def __init__(self, recording_id: str, *, resumed: bool = False) -> None:
        self.recording_id = recording_id
        self.resumed = resumed
        """Taken over from the backlog a previous run left (its last writes unknown)."""
        self.playlist: str | None = None
        """The newest playlist not written yet."""
        self.etag: str | None = None
        """ETag of the stored playlist as we last wrote or read it; ``None``: none known."""
        self.failure: str | None = None
        self._segments: deque[WaitingSegment] = deque()
        self._attempts: deque[str] = deque(maxlen=_REMEMBERED_ATTEMPTS)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.files = asyncio.Lock()
        """Held while the recording's backlog files (pending playlist, ETag) are written."""

    def start(self, loop: Coroutine[Any, Any, None]) -> None:
        """Run ``loop`` (the upload task) until :meth:`stop` or a failure."""
        self._task = asyncio.create_task(loop, name=f"upload:{self.recording_id}")

    async def stop(self) -> None:
        """Cancel the upload task and wait for it to end."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._idle.set()

    # -- the producer side (the recording) ---------------------------------------------

    def add_segment(self, path: Path, size: int) -> None:
        self._segments.append(WaitingSegment(path, size))
        self._poke()

    def set_playlist(self, text: str) -> None:
        self.playlist = text
        self._poke()

    def raise_if_failed(self) -> None:
        if self.failure is not None:
            raise RecordingFailed(self.failure)

    async def wait_idle(self) -> None:
        """Until nothing waits (or the recording failed)."""
        await self._idle.wait()

    async def settle(self, seconds: float | None) -> None:
        """Wait until nothing waits (``seconds`` at most, ``None``: no bound); raise
        :class:`~workers.storage.RecordingFailed` if the recording failed, and
        :class:`~workers.storage.StorageUnavailable` if something still waits (the
        uploads were stopped, or the time ran out)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if seconds is None else max(seconds, 0.0)):
                await self._idle.wait()
        self.raise_if_failed()
        if not self.idle:
            raise StorageUnavailable(
                f"recording {self.recording_id}: not all of it is in object storage yet"
            )

    def fail(self, reason: str) -> None:
        """Mark the recording failed and stop its task (see :meth:`drop_waiting`)."""
        self.failure = reason
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        self._idle.set()

    def drop_waiting(self) -> int:
        """Forget what waits; return the bytes of the segments forgotten."""
        dropped = sum(segment.size for segment in self._segments)
        self._segments.clear()
        self.playlist = None
        return dropped

    # -- the consumer side (the upload task) -------------------------------------------

    async def wait_for_work(self) -> None:
        while not self._segments and self.playlist is None:
            self._idle.set()
            self._wake.clear()
            await self._wake.wait()

    def next_segment(self) -> WaitingSegment | None:
        """The oldest waiting segment, ``None`` when only the playlist waits."""
        return self._segments[0] if self._segments else None

    def segment_done(self) -> None:
        self._segments.popleft()

    def attempted(self, text: str) -> None:
        """``text`` is being sent as the playlist (its answer may be lost)."""
        self._attempts.append(text)

    def playlist_written(self, text: str, etag: str) -> None:
        self.etag = etag
        self._closed = "#EXT-X-ENDLIST" in text
        self._attempts.clear()
        if self.playlist == text:
            self.playlist = None

    def precondition_failed(self, stored: tuple[str, str] | None) -> None:
        """The conditional playlist write was refused; ``stored`` is ``(text, ETag)`` of what
        the server holds. If that is one of our own recent writes (whose answer was lost), take
        its ETag and carry on; otherwise raise :class:`PlaylistConflict`."""
        if stored is not None and (stored[0] in self._attempts or self._earlier_state(stored[0])):
            self.playlist_written(stored[0], stored[1])
            return
        what = "deleted" if stored is None else "changed"
        raise PlaylistConflict(
            f"the playlist of recording {self.recording_id} was {what} by another writer "
            "(another node recording the same id?); this node stopped writing it"
        )

    def _earlier_state(self, stored: str) -> bool:
        """A resumed recording recognises as its own a stored playlist whose segments begin
        the one it is sending (the previous run stored it, and the answer died with it)."""
        if not self.resumed or not self._attempts:
            return False
        ours = [s.name for s in parse_media_playlist(self._attempts[-1])]
        theirs = [s.name for s in parse_media_playlist(stored)]
        return bool(theirs) and ours[: len(theirs)] == theirs and "#EXT-X-ENDLIST" not in stored

    @property
    def closed(self) -> bool:
        """The last playlist written ends the recording (``EXT-X-ENDLIST``)."""
        return self._closed

    def task_ended(self) -> None:
        """The upload task ends by itself (the recording is closed and fully stored)."""
        self._task = None
        self._idle.set()

    @property
    def waiting_segments(self) -> int:
        return len(self._segments)

    @property
    def running(self) -> bool:
        """The upload task runs (not stopped, failed or done)."""
        return self._task is not None

    @property
    def idle(self) -> bool:
        return not self._segments and self.playlist is None

    def _poke(self) -> None:
        self._idle.clear()
        self._wake.set()
