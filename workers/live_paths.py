"""The registry of live paths on this node: the only record of what is live here, the only way
in (:meth:`LivePaths.admit`) and the only way to end it (:meth:`LivePaths.end`).

Everything that changes a stream's live state holds that stream's lock: an admission from its
key check to its registration, an end from its look-up to the path's last flush, a change of
restream targets. So after :meth:`LivePaths.end` returns, no publisher admitted before it is
left, whatever the interleaving; it implements :class:`ingest.live.PathAdmission`.

The key check is the one step that cannot take the lock first: which stream a key belongs to is
what the check finds out. Every end (and every change of restream targets) therefore leaves a
mark, and an admission that finds a mark for its stream made since its check began checks the
key again under the lock, which sees the change (the API commits a change first).

A new session holds its stream's ownership lease (:mod:`workers.ownership`), claimed under the
lock after the key check and before registration, released when the session ends. A publish is
refused while another node holds it; a path whose lease is lost ends by itself (``lease_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from config.logs import stream_id_var
from config.settings import Settings
from ingest.authorizer import PublishAuthorizer, PublishDenied, PublishGrant, RestreamTarget
from ingest.live import AdmissionClosed, EndReason, Publisher
from workers.change_marks import ChangeMarks
from workers.events import (
    LeftOpen,
    NoResume,
    NoStreamEvents,
    Resumed,
    SessionInfo,
    SessionResume,
    StreamEvents,
)
from workers.live_path import LivePath
from workers.ownership import (
    HANDOVER_SECONDS,
    Owned,
    Ownership,
    SoleOwnership,
    claim_for_publish,
)
from workers.recording import RecordingStore, RecordingSummary
from workers.recording_recovery import finalize_unfinished
from workers.storage import RecordingStorage

log = logging.getLogger(__name__)


class PathsClosed(AdmissionClosed):
    """The node is draining or shutting down: no new publisher is admitted."""


class LivePaths:
    """Every live path on this node (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        authorizer: PublishAuthorizer,
        recordings: RecordingStore | None = None,
        storage: RecordingStorage | None = None,
        events: StreamEvents | None = None,
        ownership: Ownership | None = None,
        resume: SessionResume | None = None,
        handover_seconds: float = HANDOVER_SECONDS,
    ) -> None:
        """``authorizer`` checks stream keys; without ``recordings`` and ``storage`` nothing is
        recorded; without ``events`` the sessions go unreported; without ``ownership`` this
        node owns every stream (no database shared with other nodes); ``resume`` continues
        the session an earlier owner left open. A publish of a stream another node owns is
        refused after ``handover_seconds`` of asking it to hand over."""
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._authorizer = authorizer
        self._recordings = recordings
        self._storage = storage
        self._events: StreamEvents = events if events is not None else NoStreamEvents()
        self._paths: dict[str, LivePath] = {}
        self._locks: dict[str, _StreamLock] = {}
        self._marks = ChangeMarks()
        self._ending: set[LivePath] = set()
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._ownership: Ownership = ownership if ownership is not None else SoleOwnership()
        self._resume: SessionResume = resume if resume is not None else NoResume()
        self._handover_seconds = handover_seconds
        self._losses: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ownership.watch(self._lease_lost)
        self._closed_for: EndReason = "shutdown"

    # -- what the API reads -------------------------------------------------------------------

    def get(self, stream_id: str, *, ending: bool = False) -> LivePath | None:
        """The live path of ``stream_id``, if it is live (also inside its reconnect window);
        with ``ending``, else the one that is ending (no longer registered), if any."""
        found = self._paths.get(stream_id)
        return found or next((p for p in self._ending if p.stream_id == stream_id and ending), None)

    def paths(self) -> tuple[LivePath, ...]:
        """Every live path on this node."""
        return tuple(self._paths.values())

    def publishing(self) -> int:
        """How many paths have a publisher now."""
        return sum(path.publisher is not None for path in self._paths.values())

    # -- admission ----------------------------------------------------------------------------

    async def admit(self, stream_key: str, publisher: Publisher) -> LivePath:
        """Check ``stream_key`` and make ``publisher`` its stream's publisher, as one step per
        stream: a new path, the same session continued (reconnect window, or a stale publisher
        replaced), or the stale session ended and a new one begun when the stream has no
        window. Raises :class:`PublishDenied` for a refused key, :class:`PathsClosed` once
        :meth:`close` began."""
        if self._closed:  # no key check (nor database query) for a node that is going away
            raise PathsClosed(self._closed_for)
        mark = self._marks.begin()
        try:
            address = publisher.client_address
            grant = await self._authorizer.authorize_publish(stream_key, address)
            async with self._exclusive(grant.stream_id):
                if self._marks.changed_since(grant.stream_id, mark):
                    grant = await self._check_again(stream_key, address, grant.stream_id)
                return await self._admit(grant, publisher)
        finally:
            self._marks.done(mark)

    async def _check_again(self, stream_key: str, address: str, stream_id: str) -> PublishGrant:
        """The stream changed while its key was checked: check it again (under the lock)."""
        log.info("stream %s changed while a publish from %s was checked", stream_id, address)
        grant = await self._authorizer.authorize_publish(stream_key, address)
        if grant.stream_id != stream_id:  # keys are unique: only a new key could do this
            raise PublishDenied("unknown stream key")
        return grant

    async def _admit(self, grant: PublishGrant, publisher: Publisher) -> LivePath:
        if self._closed:
            raise PathsClosed(self._closed_for)
        stream_id = grant.stream_id
        stream_id_var.set(stream_id)  # the admitting task and the outputs it starts
        path = self._paths.get(stream_id)
        if path is not None and not path.continues:
            await self._end_locked(path, "publisher_left")
            path = None
        if path is not None:
            path.take_over(grant, publisher)
            return path
        return await self._open(grant, publisher)

    async def _open(self, grant: PublishGrant, publisher: Publisher) -> LivePath:
        """Claim the stream's lease, prepare a clean live directory, begin a new session."""
        stream_id = grant.stream_id
        generation = await claim_for_publish(self._ownership, stream_id, self._handover_seconds)
        try:
            cleanup = self._cleanups.pop(stream_id, None)
            if cleanup is not None:
                cleanup.cancel()
            directory = self._settings.live_dir / stream_id
            await asyncio.to_thread(_reset_dir, directory)
        except BaseException:
            await self._ownership.release(stream_id, generation)
            raise
        address = publisher.client_address
        window = grant.reconnect_window_seconds
        resumed = await self._resume.resume(
            stream_id, generation, window=window, client_address=address
        )
        self._spawn(self._close_older(stream_id, generation, resumed))
        began = (
            (resumed.session_id, resumed.started_at) if resumed else (new_session_id(), time.time())
        )
        info = SessionInfo(stream_id, *began, address, generation)
        path = LivePath(
            self._settings,
            ffmpeg=self._ffmpeg,
            grant=grant,
            info=info,
            directory=directory,
            events=self._events,
            request_end=self._end_if,
            recordings=self._recordings,
            storage=self._storage,
            resumed=resumed,
            drain_hands_over=self._resume.shared,
        )
        self._paths[stream_id] = path
        path.begin(publisher)
        return path

    async def _close_older(self, stream_id: str, generation: int, resumed: Resumed | None) -> None:
        """Close now what earlier ownerships left open (a node that stopped without ending its
        session): sessions, then recordings but the continued one. An unended session tells of
        an unclean end; without one, a recording may still be closing here."""
        kept = resumed.recording_id if resumed is not None else None
        try:
            closed = await self._resume.close_older(stream_id, generation)
            storage = self._storage
            if not closed or self._recordings is None or storage is None or not storage.shared:
                return  # (recordings on a lost node's disk wait for its next start)
            older = [  # finalized as this ownership's: a stale owner's later state is refused
                replace(r, lease_generation=generation)
                for r in await self._recordings.unfinished_recordings()
                if r.stream_id == stream_id
                and r.recording_id != kept
                and (r.lease_generation is None or r.lease_generation < generation)
            ]
            if older:
                await finalize_unfinished(self._recordings, storage, older)
        except Exception:
            log.exception("stream %s: closing what earlier owners left open failed", stream_id)

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._losses.add(task)
        task.add_done_callback(self._losses.discard)

    # -- changes and ends -------------------------------------------------------------------

    async def end(self, stream_id: str, reason: EndReason) -> bool:
        """End the live path of ``stream_id`` now (publisher disconnected, outputs flushed, the
        session recorded as ended), also inside its reconnect window, and turn away any
        publish whose key check began before this call. Returns whether it was live."""
        self._marks.changed(stream_id)
        async with self._exclusive(stream_id):
            path = self._paths.get(stream_id)
            if path is None:
                return False
            await self._end_locked(path, reason)
            return True

    async def update_restream(self, stream_id: str, targets: Sequence[RestreamTarget]) -> bool:
        """Relay ``stream_id`` to ``targets`` from now on if it is live here (a publish being
        admitted meanwhile reads them too); returns whether it was live."""
        self._marks.changed(stream_id)
        async with self._exclusive(stream_id):
            path = self._paths.get(stream_id)
            if path is None or path.ending:
                return False
            path.outputs.set_restream(targets)
            return True

    async def _end_if(self, path: LivePath, reason: EndReason, still: Callable[[], bool]) -> None:
        """End ``path`` (a path's own request: unpublish, window, deadline) if it is still
        registered and ``still()`` holds once the stream's lock is taken."""
        async with self._exclusive(path.stream_id):
            if self._paths.get(path.stream_id) is path and still():
                await self._end_locked(path, reason)

    async def _end_locked(self, path: LivePath, reason: EndReason) -> None:
        stream_id = path.stream_id
        if self._paths.get(stream_id) is path:
            del self._paths[stream_id]
        self._ending.add(path)
        try:
            await path.finish(reason)
        finally:
            self._ending.discard(path)
            await self._ownership.release(stream_id, path.lease_generation)
            if not self._closed:
                self._cleanups[stream_id] = asyncio.create_task(self._remove_later(stream_id))

    async def _remove_later(self, stream_id: str) -> None:
        """Keep the ended playlist long enough for players to reach ENDLIST, then remove it."""
        linger = self._settings.hls_segment_seconds * self._settings.hls_list_size * 2
        await asyncio.sleep(linger)
        await asyncio.to_thread(
            shutil.rmtree, self._settings.live_dir / stream_id, ignore_errors=True
        )
        self._cleanups.pop(stream_id, None)

    def _lease_lost(self, stream_id: str, generation: int) -> None:
        """The ownership lease held at ``generation`` is lost: the path holding it ends now,
        before another node can take the stream."""
        path = self._paths.get(stream_id)
        if path is None or path.lease_generation != generation:
            return
        log.error("stream %s: ownership lease lost; ending the session here", stream_id)
        self._spawn(self._end_if(path, "lease_lost", _always))

    @contextlib.asynccontextmanager
    async def _exclusive(self, stream_id: str) -> AsyncIterator[None]:
        """Hold ``stream_id``'s lock (made on first use, dropped when nobody holds or waits)."""
        entry = self._locks.get(stream_id)
        if entry is None:
            entry = self._locks[stream_id] = _StreamLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[stream_id]

    # -- start and stop -----------------------------------------------------------------------

    async def recover(
        self, sessions: LeftOpen | None = None, only: set[str] | None = None
    ) -> set[str]:
        """Close the recordings and ``sessions`` an unclean end left open (call before
        admitting, then again for the streams it returns), stream by stream, each holding the
        stream's lock and lease: a stream another node holds live is not touched. Streams live
        here keep their recordings and their own session. ``only``: these streams alone.
        Returns the streams left to do (their lease is held elsewhere, or the database failed).
        """
        try:
            recordings = await self._unfinished_recordings()
            streams = set(recordings) | (await sessions.streams_left_open() if sessions else set())
        except Exception:
            log.exception("looking for what the last run left open failed")
            return set(only) if only is not None else set()
        left: set[str] = set()
        for stream_id in sorted(streams if only is None else streams & only):
            try:
                done = await self._recover_stream(
                    stream_id, recordings.get(stream_id, []), sessions
                )
            except Exception:
                log.exception("stream %s: closing what was left open failed", stream_id)
                done = False
            if not done:
                left.add(stream_id)
        return left

    async def _unfinished_recordings(self) -> dict[str, list[RecordingSummary]]:
        by_stream: dict[str, list[RecordingSummary]] = {}
        if self._recordings is not None and self._storage is not None:
            for unfinished in await self._recordings.unfinished_recordings():
                by_stream.setdefault(unfinished.stream_id, []).append(unfinished)
        return by_stream

    async def _recover_stream(
        self, stream_id: str, recordings: list[RecordingSummary], sessions: LeftOpen | None
    ) -> bool:
        async with self._exclusive(stream_id):
            live = self._paths.get(stream_id)
            if live is not None:  # its recording and session are the live ones
                if sessions is not None:
                    await sessions.close_left_open(stream_id, live.lease_generation)
                return True
            claim = await self._ownership.claim(stream_id)
            if not isinstance(claim, Owned):
                log.info("stream %s is live on node %s: left to it", stream_id, claim.node_id)
                return False
            try:
                if recordings and self._recordings and self._storage:
                    await finalize_unfinished(self._recordings, self._storage, recordings)
                if sessions is not None:
                    await sessions.close_left_open(stream_id, claim.generation)
            finally:
                await self._ownership.release(stream_id, claim.generation)
            return True

    async def close(self, reason: EndReason = "shutdown") -> None:
        """End every path for ``reason`` (``shutdown``, or ``draining``); publishes are refused
        from now on, for the reason of the first call."""
        if not self._closed:
            self._closed, self._closed_for = True, reason
        busy = set(self._paths) | set(self._locks)
        await asyncio.gather(*(self.end(s, reason) for s in busy), return_exceptions=True)
        if self._ending:
            await asyncio.gather(*(p.finish(reason) for p in self._ending))
        for task in self._cleanups.values():
            task.cancel()
        if self._losses:
            await asyncio.gather(*self._losses, return_exceptions=True)


@dataclass
class _StreamLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """Tasks holding or waiting for the lock."""


def new_session_id() -> str:
    """A 24-hex id shaped like the API's object ids (time first, so ids sort by start)."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def _always() -> bool:
    return True


def _reset_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
