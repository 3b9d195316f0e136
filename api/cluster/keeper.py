"""The leases this node holds, renewed every third of their lifetime until released.

A lease the node can no longer renew is *lost*, for one of two reasons, and ``on_lost`` is
told which, so that the stream stops here:

- ``taken over``: the database says another node (or a later ownership) holds it now;
- ``expired``: renewals failed (the database unreachable) until the lease's lifetime,
  counted on this node's monotonic clock from just before the last successful claim or
  renewal was sent, would run out before the next renewal. Past that point another node may
  own the stream, whatever this node's wall clock says, so the keeper gives the lease up one
  renewal interval (a third of the lifetime) early: the stream has that long to stop here
  before the database lets another node claim it. Each renewal is bounded by half an
  interval, so a database that does not answer cannot hold the keeper past that point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from api.cluster.leases import Lease, StreamLeases
from api.database import describe_error
from workers.tasks import cancel_and_wait

log = logging.getLogger(__name__)

LossReason = Literal["taken over", "expired"]


@dataclass(frozen=True)
class _Held:
    lease: Lease
    deadline: float
    """Monotonic time by which the lease may have expired in the database."""


class LeaseKeeper:
    """Claims, renews and releases the leases of one node (``leases.node_id``)."""

    def __init__(
        self,
        leases: StreamLeases,
        on_lost: Callable[[str, LossReason], None],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self._on_lost = on_lost
        self._monotonic = monotonic
        self._held: dict[str, _Held] = {}
        self._runner: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        """Seconds between two renewals: a third of the lease's lifetime."""
        return self.leases.ttl / 3

    def held(self) -> dict[str, Lease]:
        """The leases held now, by stream id."""
        return {stream_id: held.lease for stream_id, held in self._held.items()}

    async def acquire(self, stream_id: str) -> Lease | None:
        """Claim ``stream_id`` and keep renewing it; ``None`` while another node owns it."""
        sent = self._monotonic()
        lease = await self.leases.claim(stream_id)
        if lease is not None:
            self._held[stream_id] = _Held(lease, sent + self.leases.ttl)
        return lease

    async def release(self, stream_id: str) -> None:
        """Stop renewing ``stream_id``'s lease and end it now. If the database cannot be
        reached the lease simply expires."""
        held = self._held.pop(stream_id, None)
        if held is None:
            return
        try:
            await self.leases.release(held.lease)
        except Exception as exc:
            log.warning(
                "lease of %s not released (%s); it expires by itself",
                stream_id,
                describe_error(exc),
            )

    async def renew_all(self) -> dict[str, LossReason]:
        """Renew every held lease once; the lost ones are dropped, reported to ``on_lost`` and
        returned."""
        lost: dict[str, LossReason] = {}
        for stream_id, held in list(self._held.items()):
            reason: LossReason
            sent = self._monotonic()
            try:
                async with asyncio.timeout(self.interval / 2):
                    renewed = await self.leases.renew(held.lease)
            except Exception as exc:
                if self._monotonic() + self.interval < held.deadline:
                    log.warning("lease of %s not renewed: %s", stream_id, describe_error(exc))
                    continue
                reason = "expired"
            else:
                if renewed is not None:
                    if self._held.get(stream_id) is held:
                        self._held[stream_id] = _Held(renewed, sent + self.leases.ttl)
                    continue
                reason = "taken over"
            if self._held.get(stream_id) is not held:
                continue  # released meanwhile
            del self._held[stream_id]
            lost[stream_id] = reason
            log.error("lease of %s lost (%s): the stream must stop here", stream_id, reason)
            try:
                self._on_lost(stream_id, reason)
            except Exception:
                log.exception("handling the loss of the lease of %s failed", stream_id)
        return lost

    def start(self) -> None:
        """Renew in the background every :attr:`interval` seconds."""
        self._runner = asyncio.create_task(self._run(), name="lease-keeper")

    async def close(self) -> None:
        """Stop renewing and release every held lease (a clean shutdown)."""
        await cancel_and_wait(self._runner)
        self._runner = None
        for stream_id in list(self._held):
            await self.release(stream_id)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.renew_all()
