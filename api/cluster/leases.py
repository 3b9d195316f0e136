"""Stream ownership leases: a stream is live on at most one node, the one holding its lease.

A lease is a row of ``stream_leases``: the owning node, a **generation** (the fencing token)
and an expiry by the database's clock. Every statement is one atomic ``INSERT … ON CONFLICT``
or ``UPDATE … RETURNING``; nothing else (no advisory lock, no node's own clock) decides who
owns a stream.

- :meth:`StreamLeases.claim` takes a lease that is free, expired or already this node's. A new
  ownership (another node, or this node after its lease lapsed) gets the next generation; a
  claim of a lease this node holds keeps it (and extends it).
- :meth:`StreamLeases.renew` extends a lease only while node *and* generation still match: a
  node whose lease was taken over learns it there (``None``) and must stop the stream.
- :meth:`StreamLeases.release` ends a lease at once (a clean end). The row stays, so the next
  owner's generation is still higher than every earlier one.

``renewed_at`` is when the owner was last seen (a renewal, or the release); a claim that begins
a new generation keeps the previous owner's in ``previous_renewed_at``, in the same statement, so
the new owner can tell how long ago the previous one was last alive (whether it may continue its
session, see :mod:`api.live.session_resume`).

The same statements keep the leases of periodic jobs that run on one node at a time
(:data:`JOBS`, table ``job_leases``, keyed by the job's name; see :mod:`api.jobs.turns`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, String, TextualSelect, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.clock import DatabaseClock, clock_of
from api.models import UTCDateTime


@dataclass(frozen=True)
class Lease:
    """A lease as the database last confirmed it."""

    stream_id: str
    node_id: str
    generation: int
    """The fencing token: larger for every later ownership of the stream."""
    expires_at: datetime
    """By the database's clock."""


@dataclass(frozen=True)
class LeaseTable:
    """A table of leases: its name and the column naming what is leased."""

    name: str
    key: str

    @property
    def returning(self) -> str:
        """The ``RETURNING`` clause of a :class:`Lease` (the key as ``stream_id``)."""
        return f" RETURNING {self.key} AS stream_id, node_id, generation, expires_at"


STREAMS = LeaseTable("stream_leases", "stream_id")
"""Leases of live streams."""
JOBS = LeaseTable("job_leases", "job")
"""Leases of periodic jobs, by job name (their :attr:`Lease.stream_id` is the job name)."""


def _typed(statement: str) -> TextualSelect:
    return text(statement).columns(
        stream_id=String, node_id=String, generation=BigInteger, expires_at=UTCDateTime
    )


def claim_statement(clock: DatabaseClock, table: LeaseTable = STREAMS) -> TextualSelect:
    """The atomic claim of ``:stream_id`` for ``:node_id`` until ``:ttl`` seconds from now."""
    t, key = table.name, table.key
    kept = f"{t}.node_id = excluded.node_id AND {t}.expires_at > {clock.now}"
    return _typed(
        f"INSERT INTO {t}"
        f" ({key}, node_id, generation, acquired_at, renewed_at, expires_at)"
        f" VALUES (:stream_id, :node_id, 1, {clock.now}, {clock.now}, {clock.plus('ttl')})"
        f" ON CONFLICT ({key}) DO UPDATE SET"
        f" generation = CASE WHEN {kept} THEN {t}.generation"
        f" ELSE {t}.generation + 1 END,"
        f" acquired_at = CASE WHEN {kept} THEN {t}.acquired_at"
        " ELSE excluded.acquired_at END,"
        f" previous_renewed_at = CASE WHEN {kept} THEN {t}.previous_renewed_at"
        f" ELSE {t}.renewed_at END,"
        " node_id = excluded.node_id,"
        " renewed_at = excluded.renewed_at,"
        " expires_at = excluded.expires_at"
        f" WHERE {t}.expires_at <= {clock.now}"
        f" OR {t}.node_id = excluded.node_id" + table.returning
    )


def renew_statement(clock: DatabaseClock, table: LeaseTable = STREAMS) -> TextualSelect:
    """Extend ``:stream_id``'s lease by ``:ttl`` seconds from now if ``:node_id`` still holds
    it at ``:generation``."""
    return _typed(
        f"UPDATE {table.name} SET renewed_at = {clock.now}, expires_at = {clock.plus('ttl')}"
        f" WHERE {table.key} = :stream_id AND node_id = :node_id AND generation = :generation"
        + table.returning
    )


def release_statement(clock: DatabaseClock, table: LeaseTable = STREAMS) -> TextualSelect:
    """Let ``:stream_id``'s lease expire now if ``:node_id`` holds it at ``:generation``."""
    return _typed(
        f"UPDATE {table.name} SET expires_at = {clock.now}, renewed_at = {clock.now}"
        f" WHERE {table.key} = :stream_id AND node_id = :node_id AND generation = :generation"
        f" AND expires_at > {clock.now}" + table.returning
    )


class StreamLeases:
    """The leases of one node (``node_id``), each ``ttl`` seconds long, in ``table`` (those of
    streams unless told otherwise)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        node_id: str,
        ttl: float,
        *,
        table: LeaseTable = STREAMS,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.node_id = node_id
        self.ttl = ttl
        self.table = table

    async def claim(self, stream_id: str) -> Lease | None:
        """Own ``stream_id`` for ``ttl`` seconds; ``None`` while another node's lease on it is
        live. A database failure raises."""
        params = {"stream_id": stream_id, "node_id": self.node_id, "ttl": float(self.ttl)}
        return await self._one(claim_statement, params)

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend ``lease`` by ``ttl`` seconds from now; ``None`` if this node no longer holds
        it at that generation (another node took it over, or it was released): the stream must
        stop here. A database failure raises (the lease may still be held)."""
        params = {**self._key(lease), "ttl": float(self.ttl)}
        return await self._one(renew_statement, params)

    async def release(self, lease: Lease) -> bool:
        """End ``lease`` now (a clean end); ``False`` if it was no longer held."""
        return await self._one(release_statement, self._key(lease)) is not None

    async def current(self, stream_id: str) -> Lease | None:
        """The lease row of ``stream_id``, live or expired (``None`` if never claimed)."""
        key = self.table.key
        statement = _typed(
            f"SELECT {key} AS stream_id, node_id, generation, expires_at FROM {self.table.name}"
            f" WHERE {key} = :stream_id"
        )
        async with self._sessionmaker() as session:
            row = (await session.execute(statement, {"stream_id": stream_id})).one_or_none()
        return None if row is None else Lease(*row)

    async def owners(self, stream_ids: Collection[str]) -> dict[str, str]:
        """The node holding a live lease (by the database's clock) on each of ``stream_ids``
        that has one."""
        if not stream_ids:
            return {}
        async with self._sessionmaker() as session:
            statement = text(
                "SELECT stream_id, node_id FROM stream_leases WHERE stream_id IN :stream_ids"
                f" AND expires_at > {clock_of(session).now}"
            ).bindparams(bindparam("stream_ids", expanding=True))
            rows = await session.execute(statement, {"stream_ids": list(stream_ids)})
            return {stream_id: node_id for stream_id, node_id in rows.all()}

    def _key(self, lease: Lease) -> dict[str, object]:
        if lease.node_id != self.node_id:
            raise ValueError(f"lease of {lease.stream_id} belongs to node {lease.node_id}")
        return {
            "stream_id": lease.stream_id,
            "node_id": lease.node_id,
            "generation": lease.generation,
        }

    async def _one(
        self,
        build: Callable[[DatabaseClock, LeaseTable], TextualSelect],
        params: dict[str, object],
    ) -> Lease | None:
        async with self._sessionmaker() as session, session.begin():
            statement = build(clock_of(session), self.table)
            row = (await session.execute(statement, params)).one_or_none()
        return None if row is None else Lease(*row)
