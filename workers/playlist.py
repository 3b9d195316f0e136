"""The live HLS playlist, owned by liverelay rather than by ffmpeg.

ffmpeg cuts MPEG-TS segments and lists them in a private playlist; :class:`LivePlaylist` reads
that list, keeps the sliding window (RFC 8216 6.2.2), deletes segments that left it, and writes
the public ``index.m3u8`` atomically. Owning the playlist lets one live playlist span ffmpeg
restarts and publisher reconnects (marked with ``EXT-X-DISCONTINUITY``, RFC 8216 4.3.2.3) and lets
the recording reuse the same segment files.

The window is kept on the event loop; the file work that can wait for the disk (replacing
``index.m3u8``, deleting retired segments) runs in worker threads through the ``async``
methods, one step after the other per playlist. ffmpeg's small list is read on the loop
(from the page cache), unless file work of the playlist is still running. A rename over an
existing file can make the filesystem flush the new file first (ext4 ``auto_da_alloc``) and
stall for hundreds of milliseconds under write load; the event loop must not wait for that.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from workers.m3u8 import (
    PLAYLIST_NAME,
    Segment,
    parse_media_playlist,
    render_playlist,
    write_atomically,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


SyncKey = tuple[str, int, int, int]
"""Path, inode, mtime and size of a private playlist."""


@dataclass(frozen=True)
class Listing:
    """What ffmpeg's private playlist lists that the live playlist had not taken yet."""

    key: SyncKey
    segments: tuple[Segment, ...]
    """Listed segments not taken yet, in order."""
    present: frozenset[str]
    """Names among ``segments`` whose (complete, renamed into place) file exists."""


def read_listing(
    private: Path, directory: Path, synced: SyncKey | None, seen: AbstractSet[str]
) -> Listing | None:
    """Read ffmpeg's playlist ``private`` (file work only); ``None`` when it is missing or is
    still the file ``synced`` describes. ffmpeg replaces its playlist by a rename, so an
    unchanged inode, mtime and size mean the same list and it is not read again."""
    try:
        st = os.stat(private)
        key = (str(private), st.st_ino, st.st_mtime_ns, st.st_size)
        if key == synced:
            return None
        text = private.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    new = tuple(s for s in parse_media_playlist(text) if s.name not in seen)
    present = frozenset(s.name for s in new if (directory / s.name).exists())
    return Listing(key, new, present)


@dataclass(frozen=True)
class FileWork:
    """The file changes one playlist update needs, done off the event loop."""

    path: Path
    text: str | None
    """New content of ``path`` (``None``: unchanged)."""
    remove: tuple[Path, ...]
    """Files to delete once the playlist is written (segments long out of the window)."""

    def apply(self) -> None:
        """Write the playlist, then delete. A failed write raises (nothing was deleted); a
        failed delete is logged and the file left behind."""
        if self.text is not None:
            write_atomically(self.path, self.text)
        for path in self.remove:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete %s: %s", path, exc.strerror or exc)


class LivePlaylist:
    """The sliding-window live playlist of one stream, fed with segments as ffmpeg cuts them.

    Use it from the event loop: :meth:`refresh`, :meth:`flush` and :meth:`close` do the file
    work in worker threads, one step after the other.
    """

    def __init__(
        self,
        directory: Path,
        *,
        list_size: int,
        segment_seconds: float,
        on_segment: Callable[[Path, Segment], None] | None = None,
        name: str = PLAYLIST_NAME,
    ) -> None:
        self.directory = directory
        self.name = name
        """The public playlist's file name (a rendition's of an adaptive-bitrate stream has
        its own, :mod:`workers.ladder_hls`); changed only before the first segment."""
        self.list_size = list_size
        self._target = max(1, math.ceil(segment_seconds))
        self._window: deque[Segment] = deque()
        self._retired: deque[Segment] = deque()
        self._media_sequence = 0
        self._discontinuity_sequence = 0
        self._pending_discontinuity = False
        self._seen: set[str] = set()
        self._on_segment = on_segment
        self._synced: SyncKey | None = None
        """The private playlist when every segment it listed was taken (nothing new in it)."""
        self._dirty = False
        """``index.m3u8`` on disk is behind the window."""
        self._doomed: list[Path] = []
        """Files to delete with the next file work."""
        self._io: asyncio.Future[Any] | None = None
        """The last file work started in a worker thread; the next one starts after it."""
        self.ended = False
        self.segments_total = 0
        """Segments published since the playlist began."""

    @property
    def path(self) -> Path:
        """The public playlist file."""
        return self.directory / self.name

    @property
    def window(self) -> tuple[Segment, ...]:
        """Segments currently listed."""
        return tuple(self._window)

    def mark_discontinuity(self) -> None:
        """The next segment starts a new encoding (ffmpeg restart or publisher reconnect)."""
        if self.segments_total:
            self._pending_discontinuity = True

    def add(self, segment: Segment) -> None:
        """Append ``segment`` to the window, retiring the oldest beyond ``list_size``. Changes
        only the state; the files follow with the next :meth:`flush`."""
        if self._pending_discontinuity:
            segment = Segment(segment.name, segment.duration, discontinuity=True)
            self._pending_discontinuity = False
        self._seen.add(segment.name)
        self._window.append(segment)
        self.segments_total += 1
        self._dirty = True
        self._target = max(self._target, math.ceil(segment.duration))
        if self._on_segment is not None:
            self._on_segment(self.directory / segment.name, segment)
        while len(self._window) > self.list_size:
            self._retire(self._window.popleft())

    def _retire(self, segment: Segment) -> None:
        """Drop a segment from the window; its file stays for one more window, for players
        still downloading it (RFC 8216 6.2.2), then is deleted."""
        self._media_sequence += 1
        if segment.discontinuity:
            self._discontinuity_sequence += 1
        self._retired.append(segment)
        while len(self._retired) > self.list_size:
            old = self._retired.popleft()
            self._seen.discard(old.name)
            self._doomed.append(self.directory / old.name)

    def render(self) -> str:
        """The playlist text for the current window."""
        return render_playlist(
            list(self._window),
            target_duration=self._target,
            media_sequence=self._media_sequence,
            discontinuity_sequence=self._discontinuity_sequence,
            ended=self.ended,
        )

    def _take(self, listing: Listing | None) -> int:
        """Add the complete new segments of ``listing``; returns how many."""
        if listing is None:
            return 0
        added = 0
        complete = True
        for seg in listing.segments:
            if seg.name in self._seen:
                continue
            if seg.name not in listing.present:
                complete = False  # read it again next time, even unchanged
                continue
            self.add(seg)
            added += 1
        self._synced = listing.key if complete else None
        return added

    def _take_work(self) -> FileWork | None:
        if not self._dirty and not self._doomed:
            return None
        work = FileWork(self.path, self.render() if self._dirty else None, tuple(self._doomed))
        self._dirty, self._doomed = False, []
        return work

    def _work_failed(self, work: FileWork) -> None:
        """The write failed (nothing was deleted): the next file work tries again."""
        if work.text is not None:
            self._dirty = True
        self._doomed[:0] = work.remove

    # -- the file work, in worker threads, in order --------------------------------------

    async def refresh(
        self, private_playlist: Path, *, timeout: float | None = None, last: bool = False
    ) -> int:
        """Add the segments that ffmpeg's playlist lists and the window has not taken yet,
        then write ``index.m3u8`` if the window changed; returns how many segments were added.
        Cheap when nothing changed (one ``stat``). ``last``: ffmpeg is done with
        ``private_playlist``, delete it too.

        With ``timeout``, gives up waiting for the disk after that many seconds (logged; the
        work still completes in its thread, before any later file work of this playlist)."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        added = 0
        if self._io is None or self._io.done():
            # Reading the small list ffmpeg just wrote comes from the page cache: done here,
            # it saves a thread hop per segment (at 16 streams, keyframes often arrive together),
            # and an unchanged list, most polls, costs one stat.
            listing = read_listing(private_playlist, self.directory, self._synced, self._seen)
            added = self._take(listing)
        else:
            seen = frozenset(self._seen)  # the thread must not see the set change
            read = self._in_thread(
                read_listing, private_playlist, self.directory, self._synced, seen
            )
            if await self._finished(read, deadline):
                added = self._take(read.result())
            else:
                self._log_timeout("reading ffmpeg's playlist", timeout)
        if last:
            self._doomed.append(private_playlist)
        await self._flush(deadline, timeout)
        return added

    async def flush(self, *, timeout: float | None = None) -> None:
        """Write ``index.m3u8`` if the window changed and delete the retired segments, in a
        worker thread; returns once all file work so far is done (see :meth:`refresh` for
        ``timeout``)."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        await self._flush(deadline, timeout)

    async def close(self, *, timeout: float | None = None) -> None:
        """Close the playlist with ``EXT-X-ENDLIST`` (the live session is over) and write it,
        in a worker thread."""
        self.ended = True
        if self._window:
            self._dirty = True
        await self.flush(timeout=timeout)

    async def _flush(self, deadline: float | None, timeout: float | None) -> None:
        work = self._take_work()
        if work is None:  # wait for the work in flight; its failure is retried, not raised
            if self._io is not None and not await self._finished(self._io, deadline):
                self._log_timeout("writing the playlist", timeout)
            return
        task = self._in_thread(work.apply)
        task.add_done_callback(lambda t: self._work_failed(work) if _failed(t) else None)
        if await self._finished(task, deadline):
            task.result()
        else:
            self._log_timeout("writing the playlist", timeout)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a worker thread once the previous file work of this playlist
        ended (whoever waited for it), so two never overlap and they happen in order."""
        previous = self._io

        async def run() -> T:
            if previous is not None:
                await asyncio.wait({previous})
            return await asyncio.to_thread(fn, *args)

        task = asyncio.ensure_future(run())
        task.add_done_callback(_failed)
        self._io = task
        return task

    @staticmethod
    async def _finished(task: asyncio.Future[Any], deadline: float | None) -> bool:
        """Wait for ``task`` until ``deadline`` (loop time) at most; never cancels it."""
        if task.done():
            return True
        loop = asyncio.get_running_loop()
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        done, _ = await asyncio.wait({task}, timeout=timeout)
        return bool(done)

    def _log_timeout(self, what: str, timeout: float | None) -> None:
        name, seconds = self.directory.name, timeout or 0.0
        log.warning("%s: %s not done after %.1f s; not waiting for it", name, what, seconds)


def _failed(task: asyncio.Future[Any]) -> bool:
    """Whether ``task`` did not complete (also marks its exception retrieved: a failure is
    reported by whoever waits for the task, or retried by the next file work)."""
    return task.cancelled() or task.exception() is not None
