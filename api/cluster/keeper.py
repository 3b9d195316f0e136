"""The leases this node holds, renewed every third of their lifetime until released.

A lease the node can no longer renew is *lost*, for one of two reasons, and ``on_lost`` is
told which, so that the stream stops here:

- ``taken over``: the database says another node (or a later ownership) holds it now;
- ``expired``: renewals failed (the database unreachable) until the lease's **give-up
  point**: its lifetime, counted on this node's monotonic clock from just before the last
  successful claim or renewal was sent, less one renewal interval (a third of the lifetime).
  Past the lifetime another node may own the stream, whatever this node's wall clock says;
  giving up an interval early leaves the stream that long to stop here before the database
  lets another node claim it.

The give-up point holds whether the database refuses at once (connections reset) or does not
answer at all (a silent partition, where a statement would hang until TCP gives up): every
attempt is bounded by half an interval and by the give-up point, and is abandoned (cancelled,
not awaited) when its time is up; a failed renewal is retried after a quarter of an interval,
not a whole one; the leases are renewed concurrently, so a hanging renewal of one stream does
not delay another's.
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
    give_up: float
    """Monotonic time after which a failed renewal loses the lease (a renewal interval
    before :attr:`deadline`)."""


class _Abandoned(TimeoutError):
    """A renewal attempt ran out of time and was abandoned."""


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
        self._abandoned: set[asyncio.Future[Lease | None]] = set()
        self.failing = 0
        """Leases whose last renewal failed, their give-up point not reached yet."""

    @property
    def interval(self) -> float:
        """Seconds between two renewals: a third of the lease's lifetime."""
        return self.leases.ttl / 3

    @property
    def retry_after(self) -> float:
        """Seconds between a failed renewal and the next attempt: a quarter of an interval."""
        return self.interval / 4

    def held(self) -> dict[str, Lease]:
        """The leases held now, by stream id."""
        return {stream_id: held.lease for stream_id, held in self._held.items()}

    async def acquire(self, stream_id: str) -> Lease | None:
        """Claim ``stream_id`` and keep renewing it; ``None`` while another node owns it."""
        sent = self._monotonic()
        lease = await self.leases.claim(stream_id)
        if lease is not None:
            self._held[stream_id] = self._hold(lease, sent)
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
        """Renew every held lease once, concurrently; the lost ones are dropped, reported to
        ``on_lost`` and returned. A lease whose renewal failed but whose give-up point is still
        ahead is kept (and counted by :attr:`failing`)."""
        held = list(self._held.items())
        outcomes = await asyncio.gather(*(self._renew(stream_id, h) for stream_id, h in held))
        lost: dict[str, LossReason] = {}
        self.failing = 0
        for (stream_id, h), reason in zip(held, outcomes, strict=True):
            if reason is None:
                continue
            if reason == "failing":
                self.failing += 1
                continue
            if self._held.get(stream_id) is not h:
                continue  # released meanwhile
            del self._held[stream_id]
            lost[stream_id] = reason
            log.error("lease of %s lost (%s): the stream must stop here", stream_id, reason)
            try:
                self._on_lost(stream_id, reason)
            except Exception:
                log.exception("handling the loss of the lease of %s failed", stream_id)
        return lost

    async def _renew(self, stream_id: str, held: _Held) -> LossReason | Literal["failing"] | None:
        """One renewal of ``held``: ``None`` once renewed, else why not."""
        sent = self._monotonic()
        try:
            renewed = await self._bounded(held.lease, min(self.interval / 2, held.give_up - sent))
        except Exception as exc:
            if self._monotonic() < held.give_up:
                log.warning("lease of %s not renewed: %s", stream_id, describe_error(exc))
                return "failing"
            log.warning("lease of %s not renewed in time: %s", stream_id, describe_error(exc))
            return "expired"
        if renewed is None:
            return "taken over"
        if self._held.get(stream_id) is held:
            self._held[stream_id] = self._hold(renewed, sent)
        return None

    async def _bounded(self, lease: Lease, seconds: float) -> Lease | None:
        """Renew ``lease`` within ``seconds``, else raise :class:`_Abandoned`. The attempt runs
        as a task of its own that is cancelled but not awaited when its time is up: cleaning
        up a connection that does not answer must not hold the keeper."""
        if seconds <= 0:
            raise _Abandoned("no time left before the lease could expire")
        attempt = asyncio.ensure_future(self.leases.renew(lease))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=seconds)
        except asyncio.CancelledError:
            attempt.cancel()
            raise
        if attempt in done:
            return attempt.result()
        attempt.cancel()
        self._abandoned.add(attempt)
        attempt.add_done_callback(self._forget)
        raise _Abandoned(f"no answer within {seconds:.2f} s")

    def _forget(self, attempt: asyncio.Future[Lease | None]) -> None:
        self._abandoned.discard(attempt)
        error = None if attempt.cancelled() else attempt.exception()
        if error is not None:
            log.debug("an abandoned lease renewal failed: %s", describe_error(error))

    def _hold(self, lease: Lease, sent: float) -> _Held:
        """``lease`` as confirmed by a statement sent at monotonic time ``sent``."""
        deadline = sent + self.leases.ttl
        return _Held(lease, deadline, deadline - self.interval)

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
        """Renew every interval, counted from the start of the previous round (a slow round
        does not push the next one back); sooner after a failure."""
        pause = self.interval
        while True:
            await asyncio.sleep(pause)
            began = self._monotonic()
            await self.renew_all()
            if self.failing:
                pause = self.retry_after
            else:
                pause = max(0.0, began + self.interval - self._monotonic())
