"""What earlier ownerships left open (sessions without an end, recordings still
``recording``), and which of it recovery may close now.

A session whose owner stopped without ending it waits for the stream's next owner for the
stream's reconnect window, counted from when the owner was last seen (the lease's
``renewed_at``: its last renewal, or its release): a node that drained handed it over (it
released the lease), a node that died left it (its lease expired). Inside the window a publish
on any node continues it (:mod:`api.live.session_resume`).

- Start-up recovery leaves a session that was handed over alone while it waits; what a dead
  owner left it closes as before, once the lease is free (``error``).
- Every node sweeps every ``LIVERELAY_LEASE_SECONDS``
  (:func:`api.live.media_context.recover_later`) for sessions whose lease is free and whose
  window has passed, and closes them with their recordings through
  :meth:`workers.live_paths.LivePaths.recover`: end reason ``publisher_left`` when the owner
  handed the session over and nobody published again, ``error`` when the owner's lease
  expired. (The streams start-up recovery left because another node held them are closed
  as before, once their lease is free.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.clock import database_now
from api.database import describe_error
from api.live.stream_events import DatabaseStreamEvents
from api.models import LiveSession, LiveStream, Recording, StreamLease
from ingest.live import EndReason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leftovers:
    """The streams with something left open, by the state of their lease."""

    streams: frozenset[str] = frozenset()
    """Every stream with a session without an end (or a recording still ``recording``)."""
    held: frozenset[str] = frozenset()
    """Those whose lease is held (a node relays them, or has not been gone long enough)."""
    waiting: frozenset[str] = frozenset()
    """Those whose lease is free but whose owner was last seen inside the stream's reconnect
    window: the stream's next owner may still continue the session."""
    released: frozenset[str] = frozenset()
    """Those whose free lease was released by its owner (not left to expire)."""


async def find_leftovers(
    sessionmaker: async_sessionmaker[AsyncSession], *, recordings: bool
) -> Leftovers:
    """The streams with a session left open (and with a recording still ``recording``, with
    ``recordings``), judged by the database's clock. Raises when the database fails."""
    async with sessionmaker() as session:
        open_sessions = select(LiveSession.live_stream_id).where(LiveSession.ended_at.is_(None))
        streams = set((await session.scalars(open_sessions.distinct())).all())
        if recordings:
            unfinished = select(Recording.live_stream_id).where(Recording.status == "recording")
            streams |= set((await session.scalars(unfinished.distinct())).all())
        if not streams:
            return Leftovers()
        now = await database_now(session)
        rows = await session.execute(
            select(
                StreamLease.stream_id,
                StreamLease.renewed_at,
                StreamLease.expires_at,
                LiveStream.reconnect_window_seconds,
            )
            .join(LiveStream, LiveStream.id == StreamLease.stream_id)
            .where(StreamLease.stream_id.in_(streams))
        )
    held, waiting, released = set(), set(), set()
    for stream_id, renewed_at, expires_at, window in rows:
        if expires_at > now:
            held.add(stream_id)
            continue
        if expires_at == renewed_at:  # a release sets both at once; an expiry comes later
            released.add(stream_id)
        if window > 0 and renewed_at + timedelta(seconds=window) > now:
            waiting.add(stream_id)
    return Leftovers(frozenset(streams), frozenset(held), frozenset(waiting), frozenset(released))


@dataclass
class LeftoverSessions:
    """The :class:`workers.events.LeftOpen` that recovery closes sessions through: each with
    the end reason its stream's lease tells (see the module docstring). :meth:`at_start` and
    :meth:`sweep` say which streams recovery may do now."""

    sessionmaker: async_sessionmaker[AsyncSession]
    events: DatabaseStreamEvents
    _released: frozenset[str] = field(default=frozenset())

    async def at_start(self) -> set[str] | None:
        """The streams start-up recovery may close (all but those still waiting for their
        next owner); ``None`` (every stream) when the database cannot say."""
        try:
            found = await find_leftovers(self.sessionmaker, recordings=True)
        except Exception as exc:
            log.warning(
                "looking for sessions waiting for a next owner failed: %s", describe_error(exc)
            )
            return None
        self._released = found.released
        return set(found.streams - (found.waiting & found.released))

    async def sweep(self, left: set[str]) -> set[str]:
        """The streams a periodic turn closes: those whose session's window has passed with
        their lease free, and ``left`` (streams start-up recovery could not do) but those
        handed over and still waiting for their next owner."""
        try:
            found = await find_leftovers(self.sessionmaker, recordings=False)
        except Exception as exc:
            log.warning("looking for sessions nobody continued failed: %s", describe_error(exc))
            return set(left)
        self._released = found.released
        handed_over = found.waiting & found.released
        return set((left - handed_over) | (found.streams - found.held - found.waiting))

    async def streams_left_open(self) -> set[str]:
        """See :meth:`workers.events.LeftOpen.streams_left_open`."""
        return await self.events.streams_left_open()

    async def close_left_open(self, stream_id: str, before_generation: int) -> int:
        """See :meth:`workers.events.LeftOpen.close_left_open`."""
        reason: EndReason = "publisher_left" if stream_id in self._released else "error"
        return await self.events.close_left_open(stream_id, before_generation, reason=reason)
