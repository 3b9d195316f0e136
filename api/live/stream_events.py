"""The database-backed :class:`workers.events.StreamEvents`: every live session is kept as a
``live_sessions`` row and every change of it queues its webhook event in the same transaction.

The media path calls these methods; they never raise into it. When the database is away (or
slower than ``timeout``) the change is logged, without parameters that could hold secrets, and
dropped: the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.database import describe_error
from api.keys import DB_SESSIONMAKER, LOW_LATENCY_ENDED, PATHS, THUMBNAILS
from api.live.stream_view import RestreamChange, StreamView
from api.models import LiveSession
from api.pool_wait import when_pool_free
from api.webhooks.outbox import EventType, enqueue
from workers.events import EndReason, RestreamState, SessionInfo
from workers.llhls_output import LowLatencyOutput

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds one event may take to be written before it is given up."""

SessionChange = Callable[[LiveSession], None]


class DatabaseStreamEvents:
    """Records sessions and queues ``livestream.*`` and ``restream.*`` events."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        view: StreamView,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_ended: Callable[[str], None] | None = None,
    ) -> None:
        """``on_ended``: told the id of each stream whose session ends (before its row is
        written)."""
        self._sessionmaker = sessionmaker
        self._view = view
        self._timeout = timeout
        self._on_ended = on_ended

    @classmethod
    def for_app(cls, app: web.Application) -> DatabaseStreamEvents:
        """The events of ``app``, whose database context has started; a session's end drops
        its stream's thumbnails and keeps its low-latency output's last window playable for a
        while (:class:`workers.llhls_output.EndedOutputs`), watched or not."""
        thumbnails = app.get(THUMBNAILS)

        def on_ended(stream_id: str) -> None:
            if thumbnails is not None:
                thumbnails.forget(stream_id)
            paths = app.get(PATHS)  # not yet while the node recovers, before it admits
            path = paths.get(stream_id, ending=True) if paths is not None else None
            output = path.outputs.hls if path is not None else None
            if isinstance(output, LowLatencyOutput):
                app[LOW_LATENCY_ENDED].remember(stream_id, output)

        return cls(app[DB_SESSIONMAKER], StreamView(app), on_ended=on_ended)

    async def session_started(self, info: SessionInfo) -> None:
        """Insert the session row; queue ``livestream.started``."""
        await self._record(info, "livestream.started", _unchanged)

    async def session_reconnected(self, info: SessionInfo, client_address: str) -> None:
        """Count the reconnect; queue ``livestream.reconnected``."""
        await self._record(info, "livestream.reconnected", _count_reconnect)

    async def session_ended(
        self, info: SessionInfo, *, ended_at: float, reason: EndReason, bytes_in: int
    ) -> None:
        """Store the end, its reason and the bytes received; queue ``livestream.ended``."""
        if self._on_ended is not None:
            self._on_ended(info.stream_id)

        def end(row: LiveSession) -> None:
            row.ended_at = _datetime(ended_at)
            row.end_reason = reason
            row.bytes_in = bytes_in

        await self._record(info, "livestream.ended", end)

    async def streams_left_open(self) -> set[str]:
        """The streams with a session row without an end (live elsewhere, or left open by a
        crash). Raises when the database cannot be asked."""
        async with self._sessionmaker() as session:
            query = select(LiveSession.live_stream_id).where(LiveSession.ended_at.is_(None))
            return set((await session.scalars(query.distinct())).all())

    async def close_left_open(
        self, stream_id: str, before_generation: int, *, reason: EndReason = "error"
    ) -> int:
        """End the sessions of ``stream_id`` left open by an ownership older than
        ``before_generation`` (or of unknown generation): ``reason`` (``error``: a crash;
        ``lease_lost``: another node took the stream over), and their
        ``livestream.ended`` events. The caller holds the stream's lease (at start-up, before
        publishes are accepted, or later for the streams then live elsewhere). Returns how
        many were closed."""
        async with self._sessionmaker() as session:
            generation = LiveSession.lease_generation
            query = select(LiveSession).where(
                LiveSession.live_stream_id == stream_id,
                LiveSession.ended_at.is_(None),
                generation.is_(None) | (generation < before_generation),
            )
            rows = (await session.scalars(query)).all()
        for row in rows:
            info = SessionInfo(
                row.live_stream_id,
                row.id,
                row.started_at.timestamp(),
                row.client_address,
                before_generation,
            )
            await self.session_ended(
                info, ended_at=time.time(), reason=reason, bytes_in=row.bytes_in
            )
            log.warning(
                "session %s of stream %s was left open by an earlier owner; closed (%s)",
                row.id,
                row.live_stream_id,
                reason,
            )
        return len(rows)

    async def restream_changed(
        self, info: SessionInfo, *, target_id: str, state: RestreamState, last_error: str | None
    ) -> None:
        """Queue ``restream.connected`` or ``restream.failed`` for the target."""
        change = RestreamChange(target_id, state, last_error)
        event_type: EventType = "restream.connected" if state == "connected" else "restream.failed"

        async def queue(session: AsyncSession) -> None:
            loaded = await self._view.load(session, info.stream_id)
            if loaded is None:
                return
            row = await _session_row(session, info)
            if _refused(row, info, event_type):
                return
            data = self._view.restream_event(*loaded, row, change)
            if data is not None:  # None: the target was removed meanwhile
                await enqueue(
                    session,
                    account_id=loaded[1].id,
                    event_type=event_type,
                    data=data,
                    stream_id=info.stream_id,
                )

        await self._transaction(info, event_type, queue)

    async def _record(
        self, info: SessionInfo, event_type: EventType, change: SessionChange
    ) -> None:
        async def apply(session: AsyncSession) -> None:
            row = await _session_row(session, info)
            if _refused(row, info, event_type):
                return
            change(row)
            await session.flush()
            loaded = await self._view.load(session, info.stream_id)
            if loaded is not None:
                data = self._view.session_event(*loaded, row)
                await enqueue(
                    session,
                    account_id=loaded[1].id,
                    event_type=event_type,
                    data=data,
                    stream_id=info.stream_id,
                )

        await self._transaction(info, event_type, apply)

    async def _transaction(
        self,
        info: SessionInfo,
        event_type: str,
        work: Callable[[AsyncSession], Awaitable[None]],
    ) -> None:
        """Run ``work`` in one transaction; log and drop any failure."""

        async def attempt() -> None:
            async with self._sessionmaker() as session, session.begin():
                await work(session)

        try:
            async with asyncio.timeout(self._timeout):  # a busy pool is waited out meanwhile
                await when_pool_free(attempt, patience=self._timeout)
        except Exception as exc:  # the media path must never see a database problem
            log.warning(
                "stream %s: %s of session %s not recorded: %s",
                info.stream_id,
                event_type,
                info.session_id,
                describe_error(exc),
            )


async def _session_row(session: AsyncSession, info: SessionInfo) -> LiveSession:
    """The row of ``info``'s session, created if missing (e.g. the start was not recorded
    because the database was away then)."""
    row = await session.get(LiveSession, info.session_id)
    if row is None:
        row = LiveSession(
            id=info.session_id,
            live_stream_id=info.stream_id,
            started_at=_datetime(info.started_at),
            client_address=info.client_address[:128],
            lease_generation=info.lease_generation,
            reconnects=0,
            bytes_in=0,
        )
        session.add(row)
    return row


def _refused(row: LiveSession, info: SessionInfo, event_type: str) -> bool:
    """Whether a change of the session row must not be applied: it comes from an ownership
    older than the one the row now carries (another node continued the session), or the
    session has ended. Refusals are logged."""
    current, writer = row.lease_generation, info.lease_generation
    if current is not None and writer is not None and writer < current:
        log.warning(
            "stream %s: %s of session %s from ownership generation %d refused: the session "
            "continues under generation %d",
            info.stream_id,
            event_type,
            info.session_id,
            writer,
            current,
        )
        return True
    if row.ended_at is not None:
        log.warning(
            "stream %s: %s of session %s refused: the session has ended",
            info.stream_id,
            event_type,
            info.session_id,
        )
        return True
    return False


def _unchanged(row: LiveSession) -> None:
    """A new session needs nothing beyond its row."""


def _count_reconnect(row: LiveSession) -> None:
    row.reconnects += 1


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
