"""Carrying out deletions on this node: a deleted stream's live session ends, its recordings
stop being served at once and their files are removed; the same for every stream of a deleted
account.

The database says what is deleted (``live_streams.deleted_at``, ``accounts.deleted_at``, and
recordings in status ``deleted``); this node acts on it:

- ``DELETE /v1/livestreams/{id}`` marks the stream and its recordings in one transaction, ends
  the live session, then calls :meth:`DeletionSweeper.remove_recordings` before it answers.
- ``liverelay apikey delete`` runs in another process and marks the account, its streams and
  their recordings; it shares the node's data directory, so it withdraws the recordings itself
  before it returns. The server notices at its next sweep, every
  ``LIVERELAY_DELETION_CHECK_SECONDS``: live publishers of deleted streams or accounts are
  disconnected (reason ``deleted``), then their recordings removed. That sweep costs one query
  by primary key over the streams live on this node, and none when nothing is live: every node
  runs it, idle or not.
- A full sweep, at start-up and every :data:`FULL_SWEEP_SECONDS`, also looks for recordings
  still marked ``deleted`` (over the ``recordings.status`` index) and removes them, with the
  withdrawn files not yet removed: what a stop in between, or the CLI, left. That part works on
  the whole database, so with several nodes it runs on one at a time: the node holding the
  ``deletion-sweep`` job lease (:mod:`api.jobs.turns`). Ending deleted live streams stays with
  every node (each ends its own), as does emptying its own trash. Recordings on local disk are
  each node's own: a node removes only those of its data directory (``recordings.data_id``, or
  none recorded), at every full sweep whoever's turn it is.

Playback serves recordings from disk without asking the database (segments are requested
often). Removing a recording therefore starts with one rename of its directory out of the
served tree (:meth:`workers.storage.LocalRecordingStorage.withdraw`): every request after it is
a 404. Only then is its row deleted, and its files are removed in the background. A stop between
the two steps leaves the row marked ``deleted``, found again by the next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from aiohttp import web
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.nodes import data_directory_id_or_none
from api.database import describe_error
from api.jobs.turns import JobTurns
from api.keys import (
    CLUSTER,
    DB_SESSIONMAKER,
    DELETION_SWEEPER,
    PATHS,
    RECORDING_STORAGE,
    SETTINGS,
)
from api.live.media_context import end_live
from api.models import Account, LiveStream, Recording
from api.queries import DELETED
from api.recording_storage import object_storage
from ingest.live import EndReason
from workers.recording_storages import AnyRecordingStorage

log = logging.getLogger(__name__)

REMOVAL_BATCH = 100
"""Recordings withdrawn per query."""
FULL_SWEEP_SECONDS = 60.0
"""Seconds between two full sweeps (recordings marked ``deleted`` that no sweep of this node
ended: a stop in between, or the CLI)."""

EndLive = Callable[[str, EndReason], Awaitable[bool]]


class DeletionSweeper:
    """Ends the live sessions of deleted streams and removes their recordings' files."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        storage: AnyRecordingStorage,
        *,
        live_ids: Callable[[], Iterable[str]],
        end_live: EndLive,
        interval: float,
        turns: JobTurns | None = None,
        data_id: str | None = None,
    ) -> None:
        """``live_ids``: the streams with a publisher or a running session on this node;
        ``end_live``: ends one of them; ``interval``: seconds between sweeps; ``turns``: the
        job lease deciding whether this node's full sweep removes every recording marked
        ``deleted`` (always when ``None``); ``data_id``: recordings are on local disk, in the
        data directory of this id: only those (and those of no recorded directory) are this
        node's to remove, at every full sweep whoever's turn it is."""
        self._sessionmaker = sessionmaker
        self._storage = storage
        self._live_ids = live_ids
        self._end_live = end_live
        self._interval = interval
        self._turns = turns
        self._data_id = data_id
        self._runner: asyncio.Task[None] | None = None
        self._emptying: asyncio.Task[None] | None = None
        self._empty_again = False
        self._ended: set[str] = set()
        """Deleted streams whose live session a sweep ended, until their recordings went."""
        self.sweeps = 0
        """Sweeps completed (failed ones not counted)."""
        self.full_sweeps = 0
        """Full sweeps that removed every recording marked ``deleted`` (this node's turns)."""

    def start(self) -> None:
        """Sweep fully now (leftovers of the last run), then every ``interval`` seconds."""
        self._empty_soon()
        self._runner = asyncio.create_task(self._run(), name="deletion-sweeper")

    async def close(self) -> None:
        """Stop sweeping and give the full sweep up; files not yet removed wait in the trash
        for the next start."""
        for task in (self._runner, self._emptying):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._emptying = None
        if self._turns is not None:
            await self._turns.release()

    async def sweep(self) -> None:
        """End what is live of deleted streams here, then remove the recordings of the streams
        ended so (those still being written at a later sweep). No query when nothing is live."""
        self._ended.update(await self.end_deleted_live())
        if self._ended:
            await self.remove_recordings(sorted(self._ended))
            self._ended.intersection_update(self._live_ids())

    async def sweep_all(self) -> bool:
        """:meth:`sweep`, then, if it is this node's turn, remove every recording marked
        ``deleted``; returns whether it was."""
        await self.sweep()
        if self._data_id is not None:
            await self.remove_recordings()  # this node's disk: no other node can
        if self._turns is not None and not await self._turns.mine():
            return False
        if self._data_id is None:
            await self.remove_recordings()
        self.full_sweeps += 1
        return True

    async def end_deleted_live(self) -> list[str]:
        """Disconnect the publishers (and end the sessions) of deleted streams and of deleted
        accounts' streams on this node; returns their ids."""
        live = sorted(set(self._live_ids()))
        if not live:
            return []
        async with self._sessionmaker() as session:
            deleted = await _deleted_among(session, live)
        for stream_id in deleted:
            if await self._end_live(stream_id, "deleted"):
                log.info("live stream %s was deleted: its live session ended", stream_id)
        return deleted

    async def remove_recordings(self, stream_ids: Sequence[str] | None = None) -> int:
        """Withdraw the recordings marked ``deleted`` (of ``stream_ids`` only, if given) and
        delete their rows; their files are removed in the background. Streams with a running
        session here are left for a later sweep (their recording is still being written).
        Returns how many recordings were withdrawn."""
        removed = 0
        while True:
            batch = await self._withdraw_batch(stream_ids)
            removed += batch
            if batch < REMOVAL_BATCH:
                break
        if removed:
            log.info("removed %d recordings of deleted streams", removed)
            self._empty_soon()
        return removed

    async def _withdraw_batch(self, stream_ids: Sequence[str] | None) -> int:
        busy = set(self._live_ids())
        async with self._sessionmaker() as session:
            ids = await _deleted_recordings(session, stream_ids, busy, self._data_id)
        for recording_id in ids:
            await self._storage.withdraw(recording_id)
        if ids:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    delete(Recording).where(Recording.id.in_(ids), Recording.status == DELETED)
                )
        return len(ids)

    def _empty_soon(self) -> None:
        """Remove the withdrawn files in the background (once more if a removal runs)."""
        if self._emptying is not None and not self._emptying.done():
            self._empty_again = True
            return
        self._emptying = asyncio.create_task(self._empty(), name="recording-trash")

    async def _empty(self) -> None:
        while True:
            self._empty_again = False
            try:
                await self._storage.empty_trash()
            except OSError as exc:
                log.warning("withdrawn recordings not removed: %s", describe_error(exc))
            if not self._empty_again:
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        full_due = loop.time()
        while True:
            full = loop.time() >= full_due
            try:
                await (self.sweep_all() if full else self.sweep())
            except Exception as exc:  # the database may be away: try again next time
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "deleted streams not swept: %s", describe_error(exc))
                failing = True
            else:
                self.sweeps += 1
                failing = False
                if full:
                    full_due = loop.time() + FULL_SWEEP_SECONDS
            await asyncio.sleep(self._interval)


async def _deleted_among(session: AsyncSession, stream_ids: Sequence[str]) -> list[str]:
    """Which of ``stream_ids`` are deleted, or belong to a deleted account."""
    query = (
        select(LiveStream.id)
        .join(Account, Account.id == LiveStream.account_id)
        .where(
            LiveStream.id.in_(stream_ids),
            or_(LiveStream.deleted_at.is_not(None), Account.deleted_at.is_not(None)),
        )
    )
    return list((await session.execute(query)).scalars())


async def _deleted_recordings(
    session: AsyncSession,
    stream_ids: Sequence[str] | None,
    busy: set[str],
    data_id: str | None,
) -> list[str]:
    """Up to :data:`REMOVAL_BATCH` recordings marked ``deleted``, not of ``busy`` streams (and
    with ``data_id``, in that data directory or in none recorded)."""
    query = select(Recording.id).where(Recording.status == DELETED)
    if data_id is not None:
        query = query.where(or_(Recording.data_id == data_id, Recording.data_id.is_(None)))
    if stream_ids is not None:
        query = query.where(Recording.live_stream_id.in_(stream_ids))
    if busy:
        query = query.where(Recording.live_stream_id.not_in(busy))
    query = query.order_by(Recording.id).limit(REMOVAL_BATCH)
    return list((await session.execute(query)).scalars())


async def withdraw_deleted_recordings(
    session: AsyncSession, storage: AnyRecordingStorage, account_id: str
) -> int:
    """Withdraw the recordings marked ``deleted`` of the streams of ``account_id`` (the CLI,
    after deleting an account; the server's full sweep deletes their rows and files later).
    Returns how many were withdrawn."""
    query = (
        select(Recording.id)
        .join(LiveStream, LiveStream.id == Recording.live_stream_id)
        .where(LiveStream.account_id == account_id, Recording.status == DELETED)
    )
    withdrawn = 0
    for recording_id in (await session.execute(query)).scalars():
        withdrawn += await storage.withdraw(recording_id) is not None
    return withdrawn


def _live_ids(app: web.Application) -> Callable[[], list[str]]:
    """The streams with a live path (a publisher, or a session in its window) on this node."""

    def live_ids() -> list[str]:
        return [path.stream_id for path in app[PATHS].paths()]

    return live_ids


async def deletion_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after the media and cluster contexts): sweep while the app runs."""

    async def end(stream_id: str, reason: EndReason) -> bool:
        return await end_live(app, stream_id, reason)

    settings = app[SETTINGS]
    local = object_storage(app) is None
    data_id = (
        await asyncio.to_thread(data_directory_id_or_none, settings.data_dir) if local else None
    )
    sweeper = DeletionSweeper(
        app[DB_SESSIONMAKER],
        app[RECORDING_STORAGE],
        live_ids=_live_ids(app),
        end_live=end,
        interval=settings.deletion_check_seconds,
        turns=JobTurns(
            app[DB_SESSIONMAKER],
            "deletion-sweep",
            node_id=app[CLUSTER].node_id,
            interval=FULL_SWEEP_SECONDS,
        ),
        data_id=data_id,
    )
    app[DELETION_SWEEPER] = sweeper
    sweeper.start()
    try:
        yield
    finally:
        await sweeper.close()
