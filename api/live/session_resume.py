"""The database-backed :class:`workers.events.SessionResume`: a new ownership of a stream
continues the session the previous owner left open, when that owner was last seen inside the
stream's reconnect window.

One transaction decides it. The stream's lease row says when the previous ownership was last
renewed (or released): ``previous_renewed_at``, kept by the claim that began this generation
(:mod:`api.cluster.leases`). The previous ownership's open session is taken over by a fenced
update: it succeeds only while the session is open and carries an older generation, so two
nodes can never both continue it and a stale owner's later writes are refused
(:mod:`api.live.stream_events`). The session's recording, still ``recording``, is taken over
the same way. The ``livestream.reconnected`` event is queued in that transaction.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.clock import clock_of
from api.database import describe_error
from api.live.stream_events import DatabaseStreamEvents
from api.live.stream_view import StreamView
from api.models import LiveSession, Recording
from api.webhooks.outbox import enqueue
from workers.events import Resumed

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""Seconds the decision may take before the publish goes on as a new session."""


class DatabaseSessionResume:
    """Continues sessions across ownerships (see the module docstring); ``left_open`` ends
    the sessions left open (:class:`~api.live.stream_events.DatabaseStreamEvents`)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        view: StreamView,
        left_open: DatabaseStreamEvents,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        shared: bool = False,
    ) -> None:
        """``shared``: other nodes share the database (PostgreSQL) and can continue the
        sessions of this node (:attr:`workers.events.SessionResume.shared`)."""
        self.shared = shared
        self._sessionmaker = sessionmaker
        self._view = view
        self._left_open = left_open
        self._timeout = timeout

    async def resume(
        self, stream_id: str, generation: int, *, window: float, client_address: str
    ) -> Resumed | None:
        """See :meth:`workers.events.SessionResume.resume`."""
        if window <= 0 or generation <= 1:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                async with self._sessionmaker() as session, session.begin():
                    return await self._take_over(
                        session, stream_id, generation, window, client_address
                    )
        except Exception as exc:
            log.warning(
                "stream %s: the session of its previous owner could not be continued: %s",
                stream_id,
                describe_error(exc),
            )
            return None

    async def close_older(self, stream_id: str, generation: int) -> int:
        """See :meth:`workers.events.SessionResume.close_older`."""
        return await self._left_open.close_left_open(stream_id, generation, reason="lease_lost")

    async def _take_over(
        self,
        session: AsyncSession,
        stream_id: str,
        generation: int,
        window: float,
        client_address: str,
    ) -> Resumed | None:
        clock = clock_of(session)
        recent = await session.execute(
            text(
                "SELECT 1 FROM stream_leases WHERE stream_id = :stream_id"
                " AND generation = :generation AND previous_renewed_at IS NOT NULL"
                f" AND previous_renewed_at >= {clock.plus('window')}"
            ),
            {"stream_id": stream_id, "generation": generation, "window": -float(window)},
        )
        if recent.first() is None:
            return None  # no previous owner, or it was last seen too long ago
        row = await session.scalar(
            select(LiveSession)
            .where(
                LiveSession.live_stream_id == stream_id,
                LiveSession.ended_at.is_(None),
                LiveSession.lease_generation == generation - 1,
            )
            .order_by(LiveSession.started_at.desc())
            .limit(1)
        )
        if row is None:
            return None
        taken = await session.execute(
            update(LiveSession)
            .where(
                LiveSession.id == row.id,
                LiveSession.ended_at.is_(None),
                LiveSession.lease_generation < generation,
            )
            .values(
                lease_generation=generation,
                reconnects=LiveSession.reconnects + 1,
                client_address=client_address[:128],
            )
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        recording_id = await self._take_recording(session, row, generation)
        if recording_id is not None and row.recording_id != recording_id:
            await session.execute(
                update(LiveSession)
                .where(LiveSession.id == row.id)
                .values(recording_id=recording_id)
                .execution_options(synchronize_session=False)
            )
        await session.refresh(row)
        loaded = await self._view.load(session, stream_id)
        if loaded is not None:
            await enqueue(
                session,
                account_id=loaded[1].id,
                event_type="livestream.reconnected",
                data=self._view.session_event(*loaded, row),
                stream_id=stream_id,
            )
        log.info(
            "stream %s: session %s continues here at generation %d (recording %s)",
            stream_id,
            row.id,
            generation,
            recording_id or "none",
        )
        return Resumed(
            row.id,
            row.started_at.timestamp(),
            client_address,
            row.reconnects,
            recording_id,
        )

    async def _take_recording(
        self, session: AsyncSession, row: LiveSession, generation: int
    ) -> str | None:
        """Take the session's open recording over (the one it names, or the stream's open
        recording begun with it); its id, or ``None`` if it has none still open."""
        match = (
            Recording.id == row.recording_id
            if row.recording_id is not None
            else and_(
                Recording.live_stream_id == row.live_stream_id,
                Recording.started_at == row.started_at,
            )
        )
        recording_id = await session.scalar(
            select(Recording.id).where(match, Recording.status == "recording").limit(1)
        )
        if recording_id is None:
            return None
        taken = await session.execute(
            update(Recording)
            .where(
                Recording.id == recording_id,
                Recording.status == "recording",
                or_(Recording.lease_generation.is_(None), Recording.lease_generation < generation),
            )
            .values(lease_generation=generation)
            .execution_options(synchronize_session=False)
        )
        return recording_id if taken.rowcount == 1 else None  # type: ignore[attr-defined]
