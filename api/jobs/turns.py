"""Periodic jobs that run on one node at a time: retention and the deletion sweeper's full sweep
work on the whole database, so with several nodes sharing it one of them does the work.

Which node is decided by a lease in ``job_leases``, kept with the statements of the stream
leases (:mod:`api.cluster.leases`, by the database's clock): at every period each node claims
the job's lease. The claim succeeds for the node that holds it (extending it) or, when the lease
is free or expired, for the first node to ask; the others skip that period. The lease lasts
two periods, so its holder keeps it from one period to the next; a node that stops cleanly
releases it and another takes the job over at its next period; one that dies leaves it to
expire. Nothing else (no advisory lock, no node's clock) decides.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.leases import JOBS, Lease, StreamLeases
from api.database import describe_error

log = logging.getLogger(__name__)


class JobTurns:
    """This node's turns at the periodic job ``job``, run every ``interval`` seconds."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        job: str,
        *,
        node_id: str,
        interval: float,
    ) -> None:
        self.job = job
        self._leases = StreamLeases(sessionmaker, node_id, 2 * interval, table=JOBS)
        self._held: Lease | None = None

    @property
    def node_id(self) -> str:
        """The node taking turns."""
        return self._leases.node_id

    async def mine(self) -> bool:
        """Whether this node runs the job this period: claims (or extends) the job's lease.
        ``False`` while another node holds it, or when the database cannot tell (logged)."""
        try:
            lease = await self._leases.claim(self.job)
        except Exception as exc:
            log.warning("job %s: its lease was not claimed: %s", self.job, describe_error(exc))
            self._held = None
            return False
        if lease is not None and self._held is None:
            log.info("job %s runs on this node (%s)", self.job, self.node_id)
        elif lease is None and self._held is not None:
            log.info("job %s: another node runs it now", self.job)
        self._held = lease
        return lease is not None

    async def release(self) -> None:
        """Give the job up (a clean stop): another node may run it at its next period. Call it
        once the job's task has ended: the lease is looked up rather than taken from the last
        claim, which a cancelled task may have committed without learning the answer."""
        self._held = None
        try:
            current = await self._leases.current(self.job)
            if current is not None and current.node_id == self.node_id:
                await self._leases.release(current)
        except Exception as exc:
            log.warning(
                "job %s: lease not released (it expires by itself): %s",
                self.job,
                describe_error(exc),
            )
