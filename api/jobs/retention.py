"""Retention: webhook deliveries and ended live sessions older than
``LIVERELAY_RETENTION_DAYS`` are deleted, at start-up and then every
:data:`PRUNE_INTERVAL_SECONDS`.

What is pruned, and by which timestamp:

- ``webhook_deliveries`` that are ``delivered`` or ``failed``, by ``created_at`` (when the event
  happened). A ``pending`` delivery is never pruned: the dispatcher gives up on it long before.
- ``live_sessions`` that ended, by ``ended_at``. A live session (no ``ended_at``) is never pruned,
  however long ago it started. Recordings reference streams, not sessions, so they stay.

Rows go in batches of :data:`PRUNE_BATCH`, one short transaction each, so a first run over a
large backlog never holds a long lock. With several nodes sharing a database, one prunes at a
time: the one holding the ``retention`` job lease (:mod:`api.jobs.turns`). Should two ever
overlap (a prune outlasting the lease), deleting what another node already deleted is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.database import describe_error
from api.jobs.turns import JobTurns
from api.keys import CLUSTER, DB_SESSIONMAKER, RETENTION, SETTINGS
from api.models import LiveSession, WebhookDelivery, utc_now
from workers.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0
"""Time between two prunes."""
PRUNE_BATCH = 1000
"""Rows deleted per transaction."""


@dataclass(frozen=True)
class Pruned:
    """How many rows one prune deleted."""

    deliveries: int
    """Webhook deliveries (delivered or failed) older than the retention."""
    sessions: int
    """Live sessions that ended before the retention."""


async def prune_older_than(
    sessionmaker: async_sessionmaker[AsyncSession],
    retention: timedelta,
    *,
    now: datetime | None = None,
) -> Pruned:
    """Delete the deliveries and ended sessions older than ``retention`` (from ``now``)."""
    cutoff = (now or utc_now()) - retention
    deliveries = await _delete_all(
        sessionmaker,
        WebhookDelivery.id,
        WebhookDelivery.status != "pending",
        WebhookDelivery.created_at < cutoff,
    )
    sessions = await _delete_all(
        sessionmaker,
        LiveSession.id,
        LiveSession.ended_at.is_not(None),
        LiveSession.ended_at < cutoff,
    )
    return Pruned(deliveries, sessions)


async def _delete_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    key: Any,
    *where: ColumnElement[bool],
) -> int:
    """Delete the rows of ``key``'s table matching ``where``, a batch per transaction."""
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            ids = (await session.execute(select(key).where(*where).limit(PRUNE_BATCH))).scalars()
            batch = list(ids)
            if batch:
                await session.execute(delete(key.class_).where(key.in_(batch)))
        total += len(batch)
        if len(batch) < PRUNE_BATCH:
            return total


class RetentionTask:
    """Prunes at start and every ``interval`` seconds while the app runs."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        retention: timedelta,
        *,
        interval: float = PRUNE_INTERVAL_SECONDS,
        clock: Callable[[], datetime] = utc_now,
        turns: JobTurns | None = None,
    ) -> None:
        """``turns``: the job lease deciding whether this node prunes in a period (every
        period when ``None``)."""
        self._sessionmaker = sessionmaker
        self._retention = retention
        self._interval = interval
        self._clock = clock
        self._turns = turns
        self._runner: asyncio.Task[None] | None = None
        self.periods = 0
        """Periods over: pruned here, or left to the node holding the job."""
        self.passes = 0
        """Prunes completed (failed ones not counted)."""

    def start(self) -> None:
        """Start pruning in the background."""
        self._runner = asyncio.create_task(self._run(), name="retention")

    async def close(self) -> None:
        """Stop pruning (a prune under way is rolled back) and give the job up."""
        await cancel_and_wait(self._runner)
        self._runner = None
        if self._turns is not None:
            await self._turns.release()

    async def period(self) -> Pruned | None:
        """One period: prune if it is this node's turn (``None`` if not, or if it failed)."""
        mine = self._turns is None or await self._turns.mine()
        pruned = await self.prune_once() if mine else None
        self.periods += 1
        return pruned

    async def prune_once(self) -> Pruned | None:
        """One prune; a failure (the database away) is logged and waits for the next."""
        try:
            pruned = await prune_older_than(self._sessionmaker, self._retention, now=self._clock())
        except Exception as exc:
            log.warning("retention: old rows not pruned: %s", describe_error(exc))
            return None
        self.passes += 1
        if pruned.deliveries or pruned.sessions:
            log.info(
                "retention: pruned %d webhook deliveries and %d live sessions older than %s",
                pruned.deliveries,
                pruned.sessions,
                self._retention,
            )
        return pruned

    async def _run(self) -> None:
        while True:
            await self.period()
            await asyncio.sleep(self._interval)


async def retention_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: prune while the app runs (after the database and cluster contexts
    started: the job lease is taken in this node's name)."""
    days = app[SETTINGS].retention_days
    if days == 0:
        log.info("retention: disabled (LIVERELAY_RETENTION_DAYS=0); nothing is pruned")
        yield
        return
    sessionmaker = app[DB_SESSIONMAKER]
    turns = JobTurns(
        sessionmaker, "retention", node_id=app[CLUSTER].node_id, interval=PRUNE_INTERVAL_SECONDS
    )
    task = RetentionTask(sessionmaker, timedelta(days=days), turns=turns)
    app[RETENTION] = task
    task.start()
    try:
        yield
    finally:
        await task.close()
