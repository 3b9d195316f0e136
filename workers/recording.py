"""Recording: each live session of a recorded stream kept as an HLS VOD in storage.

The recording reuses the segments the live HLS output already cuts (no second ffmpeg): the live
playlist hands every new segment to :meth:`RecordingOutput.on_segment`, which stores it (a hard
link on local disk) and rewrites the recording's playlist atomically. While live the playlist is
an ``EVENT`` playlist that only grows (RFC 8216 4.3.3.5); when the session ends it becomes a
``VOD`` playlist with ``EXT-X-ENDLIST``. A crash therefore loses at most the segment being cut,
and :func:`~workers.recording_recovery.finalize_unfinished` closes what a crash left open
(on the next start, or when another node takes the stream over).

The database lives behind :class:`RecordingStore` (implemented by ``api``), the files behind
:class:`~workers.storage.RecordingStorage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from workers.m3u8 import Segment, parse_media_playlist, playable, render_playlist
from workers.storage import RecordingFailed, RecordingStorage

log = logging.getLogger(__name__)

RecordingStatus = Literal["recording", "ready", "failed"]
FINAL_WAIT_SECONDS = 5.0
"""How long closing a recording waits for its closed playlist to be stored before it goes on
(the final state is stored later, when it is; see :meth:`RecordingOutput.close`)."""


@dataclass(frozen=True)
class RecordingSummary:
    """One recording as the store keeps it."""

    recording_id: str
    """24-hex id; also the storage name of the recording."""
    stream_id: str
    """The live stream recorded."""
    status: RecordingStatus
    """``recording`` while its session is live (or until recovered after a crash), ``ready``
    once closed and playable to the end, ``failed`` when nothing playable was kept."""
    started_at: float
    """Wall-clock start of the session (Unix seconds)."""
    ended_at: float | None = None
    """Wall-clock end, ``None`` while recording."""
    duration: float = 0.0
    """Seconds of media recorded (sum of the segment durations)."""
    bytes: int = 0
    """Bytes of the recorded segments."""
    segments: int = 0
    """Number of recorded segments."""
    error: str | None = None
    """Why the recording failed (``None`` unless ``failed``)."""
    lease_generation: int | None = None
    """Generation of the stream's ownership lease its writer holds (``None``: unknown); the
    store refuses the final state of a generation older than the one that took it over."""


class RecordingStore(Protocol):
    """Durable bookkeeping of recordings (implemented by ``api`` against the database)."""

    async def recording_started(
        self,
        stream_id: str,
        started_at: float,
        *,
        session_id: str | None = None,
        generation: int | None = None,
    ) -> str:
        """Create a ``recording`` entry for a new session (``session_id``) of ``stream_id``,
        written under ownership ``generation``; return its id."""
        ...

    async def recording_finished(self, summary: RecordingSummary) -> None:
        """Store the final state of a recording (``ready`` or ``failed``), unless a later
        ownership than the summary's took the recording over."""
        ...

    async def unfinished_recordings(self) -> Sequence[RecordingSummary]:
        """Recordings still marked ``recording`` (left open by a crash, at start-up)."""
        ...


def render_recording(segments: Sequence[Segment], *, target: int, ended: bool) -> str:
    """The recording's playlist: ``EVENT`` while it grows, ``VOD`` + ``ENDLIST`` when closed."""
    target = max([target, *(math.ceil(s.duration) for s in segments)])
    return render_playlist(
        list(segments),
        target_duration=target,
        media_sequence=0,
        ended=ended,
        playlist_type="VOD" if ended else "EVENT",
    )


class RecordingOutput:
    """Records one live session: stores each new live segment and keeps the playlist current.

    Segments arrive through :meth:`on_segment` (synchronous, from the live playlist) and are
    stored in order by a background task, so the event loop never waits on the disk.
    """

    def __init__(
        self,
        stream_id: str,
        *,
        store: RecordingStore,
        storage: RecordingStorage,
        segment_seconds: float,
        started_at: float,
        session_id: str | None = None,
        generation: int | None = None,
        resume_id: str | None = None,
        spool: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        final_wait: float = FINAL_WAIT_SECONDS,
    ) -> None:
        """``generation``: the ownership held for session ``session_id``. ``resume_id``: the
        session's open recording begun by an earlier owner, continued (see :meth:`_continue`)."""
        self.stream_id = stream_id
        self.recording_id: str | None = None
        """The id given by the store (``None`` until it answered)."""
        self._session_id, self._generation = session_id, generation
        self._resume_id, self._continued = resume_id, False
        self._store = store
        self._storage = storage
        self._target = max(1, math.ceil(segment_seconds))
        self._started_at = started_at
        self._wall_clock = wall_clock
        self._queue: asyncio.Queue[tuple[Path | dict[str, bytes], Segment] | None]
        self._queue = asyncio.Queue()
        self._spool = spool
        self._stored_files: set[str] = set()
        self._segments: list[Segment] = []
        self._bytes = 0
        self._error: str | None = None
        self._status: RecordingStatus = "recording"
        self._ended_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._final_wait = final_wait
        self._finishing: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Create the store entry and begin storing segments (in the background)."""
        self._task = asyncio.create_task(self._run(), name=f"recording:{self.stream_id}")

    def on_segment(self, path: Path, segment: Segment) -> None:
        """A new complete live segment (``LivePlaylist`` callback): store it soon."""
        if self._task is not None and self._status == "recording":
            self._queue.put_nowait((path, segment))

    def on_files(self, segment: Segment, files: Mapping[str, bytes]) -> None:
        """A new complete segment held in memory (an fMP4 segment): ``files`` by name, the
        segment and the initialization segment it needs (stored once), stored in that order."""
        if self._task is not None and self._status == "recording":
            self._queue.put_nowait((dict(files), segment))

    def summary(self) -> RecordingSummary:
        """The recording as it stands now."""
        return RecordingSummary(
            recording_id=self.recording_id or "",
            stream_id=self.stream_id,
            status=self._status,
            started_at=self._started_at,
            ended_at=self._ended_at,
            duration=round(sum(s.duration for s in self._segments), 3),
            bytes=self._bytes,
            segments=len(self._segments),
            error=self._error,
            lease_generation=self._generation,
        )

    async def close(self) -> RecordingSummary:
        """The session ended: store the queued segments, close the playlist, and once storage
        holds it mark the recording ready (failed when nothing was recorded or storage gave up
        on it) and tell the store. Waits up to ``final_wait`` seconds for that (object storage
        may be unreachable): past it the final state is stored when storage holds the
        playlist, and if the process stops first the next start finalizes the recording."""
        if self._task is None:
            return self.summary()
        self._queue.put_nowait(None)
        await asyncio.shield(self._task)
        if self._ended_at is None:
            self._ended_at = self._wall_clock()
        if self.recording_id is None:
            self._status = "failed"
            return self.summary()
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._final_wait):
                await asyncio.shield(self._finishing)
        return self.summary()

    async def hand_over(self) -> None:
        """The session goes on on another node, which continues this recording: store the
        queued segments and wait (``final_wait`` at most) until storage holds them and the
        ``EVENT`` playlist; the recording stays open (no ``ENDLIST``, no final state). A
        recording other nodes cannot reach is closed instead (the next owner begins one)."""
        if self._task is None or not self._storage.shared:
            await self.close()
            return
        self._queue.put_nowait(None)
        await asyncio.shield(self._task)
        if self.recording_id is None or self._status == "failed":
            return
        try:
            async with asyncio.timeout(self._final_wait):
                await self._storage.flush(self.recording_id)
        except (OSError, TimeoutError) as exc:
            log.warning(
                "recording %s: handed over before storage held it all (%r)", self.recording_id, exc
            )
            return
        log.info(
            "recording %s: handed over with %d segments", self.recording_id, len(self._segments)
        )

    async def _finish(self) -> None:
        if not await self._close_playlist():
            return
        summary = self.summary()
        try:
            await self._store.recording_finished(summary)
        except Exception:
            log.exception("recording %s: could not store its final state", self.recording_id)
        log.info(
            "recording %s of stream %s %s: %d segments, %.1f s, %d bytes",
            self.recording_id,
            self.stream_id,
            summary.status,
            summary.segments,
            summary.duration,
            summary.bytes,
        )

    async def _close_playlist(self) -> bool:
        """Close the playlist and wait until storage holds it; ``False`` when the final state
        is not known (storage stopped first: the recording stays open for the next start)."""
        assert self.recording_id is not None
        if self._status == "failed":
            return True
        if not self._segments:
            self._fail("no segment was recorded (the session carried no decodable media)")
            return True
        try:
            text = render_recording(self._segments, target=self._target, ended=True)
            await self._storage.write_playlist(self.recording_id, text)
        except RecordingFailed as exc:
            self._fail(str(exc))
            return True
        except OSError as exc:
            self._fail(f"could not write the recording playlist: {exc.strerror or exc}")
            return True
        try:
            await self._storage.flush(self.recording_id)
        except RecordingFailed as exc:
            self._fail(str(exc))
            return True
        except OSError as exc:
            log.warning(
                "recording %s: its closed playlist is not stored (%s); it stays open and the "
                "next start finalizes it",
                self.recording_id,
                exc,
            )
            return False
        self._status = "ready"
        return True

    def _fail(self, reason: str) -> None:
        self._status = "failed"
        self._error = reason
        log.warning(
            "recording %s of stream %s failed: %s", self.recording_id, self.stream_id, reason
        )

    async def wait_idle(self) -> None:
        """Wait until every segment handed over so far is stored and listed."""
        await self._queue.join()

    async def _run(self) -> None:
        if self._resume_id is not None:
            await self._continue(self._resume_id)
        if self.recording_id is None:  # a new recording (or one that could not be continued)
            await self._create()
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                if self.recording_id is not None:
                    await self._store_segment(*item)
            finally:
                self._queue.task_done()

    async def _create(self) -> None:
        try:
            self.recording_id = await self._store.recording_started(
                self.stream_id,
                self._started_at,
                session_id=self._session_id,
                generation=self._generation,
            )
        except Exception:
            log.exception("stream %s: could not create its recording", self.stream_id)
            self._error = "the recording could not be created"
        else:
            log.info("stream %s: recording %s started", self.stream_id, self.recording_id)

    async def _continue(self, recording_id: str) -> None:
        """Go on with ``recording_id`` from the segments its stored playlist lists, marking
        the first new one a discontinuity; a new recording begins if storage cannot say."""
        try:
            stored = await self._storage.inspect(recording_id)
        except OSError as exc:
            log.error(
                "recording %s: not continued, storage could not be read (%s); a new one begins",
                recording_id,
                exc,
            )
            return
        if stored.playlist is None and not self._storage.shared:  # on another node's disk
            log.warning("recording %s: not stored here, left to its node", recording_id)
            return
        listed = parse_media_playlist(stored.playlist) if stored.playlist else []
        kept = playable(listed, stored.segment_sizes)
        if kept and kept[0].discontinuity:
            kept[0] = replace(kept[0], discontinuity=False)
        self._segments = kept
        self._bytes = sum(stored.segment_sizes[name] for name in {n for s in kept for n in s.files})
        self._continued = bool(kept)
        self.recording_id = recording_id
        log.info("recording %s continues after %d stored segments", recording_id, len(kept))

    async def _add(self, source: Path | dict[str, bytes]) -> int:
        """Store one segment file, or the files of a segment held in memory (written to the
        spool directory for storage to link or upload, then removed there)."""
        assert self.recording_id is not None
        if isinstance(source, Path):
            return await self._storage.add_segment(self.recording_id, source)
        return await self._add_files(source)

    async def _add_files(self, files: dict[str, bytes]) -> int:
        assert self.recording_id is not None
        if self._spool is None:
            raise OSError("no spool directory for segments held in memory")
        added = 0
        for name, data in files.items():
            if name in self._stored_files:
                continue
            path = self._spool / name
            await asyncio.to_thread(_spool, path, data)
            try:
                added += await self._storage.add_segment(self.recording_id, path)
            finally:
                await asyncio.to_thread(path.unlink, missing_ok=True)
            self._stored_files.add(name)
        return added

    async def _store_segment(self, source: Path | dict[str, bytes], segment: Segment) -> None:
        assert self.recording_id is not None
        if self._status == "failed":
            return
        if not self._segments and segment.discontinuity:
            segment = replace(segment, discontinuity=False)
        elif self._continued:  # the first segment of this owner after the earlier one's
            segment = replace(segment, discontinuity=True)
            self._continued = False
        try:
            self._bytes += await self._add(source)
        except RecordingFailed as exc:  # storage gave up on it: no further segment is taken
            self._fail(str(exc))
            return
        except OSError as exc:
            # The recording goes on with a gap; the next segment says so to players.
            log.error("recording %s: segment %s lost: %s", self.recording_id, segment.name, exc)
            self._error = f"a segment could not be stored: {exc.strerror or exc}"
            return
        self._segments.append(segment)
        try:
            text = render_recording(self._segments, target=self._target, ended=False)
            await self._storage.write_playlist(self.recording_id, text)
        except RecordingFailed as exc:
            self._fail(str(exc))
        except OSError as exc:
            log.error("recording %s: playlist not updated: %s", self.recording_id, exc)


def _spool(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
