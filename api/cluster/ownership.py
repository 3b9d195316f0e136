"""The :class:`workers.ownership.Ownership` of a node: stream ownership leases in the shared
database (:class:`~api.cluster.leases.StreamLeases`), renewed by a
:class:`~api.cluster.keeper.LeaseKeeper`, whose losses end the live paths holding them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from api.cluster.keeper import LeaseKeeper, LossReason
from api.cluster.leases import StreamLeases
from api.database import describe_error
from workers.ownership import Claim, HeldElsewhere, LeaseLost, Owned

log = logging.getLogger(__name__)

AskRelease = Callable[[str, str], Awaitable[None]]
"""Asks node ``owner_node`` (first argument) to hand ``stream_id`` (second) over."""
UNKNOWN_OWNER = "unknown"
"""The owner named when a lease is held elsewhere but its row could not be read back."""

RELEASE_SECONDS = 3.0
"""Bound of one release: a session's end does not wait longer for an unreachable database (the
lease then expires by itself)."""


class LeaseOwnership:
    """This node's stream leases: claimed and released through the keeper, which renews them
    and reports their loss to whoever :meth:`watch`\\ es."""

    def __init__(
        self, leases: StreamLeases, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.keeper = LeaseKeeper(leases, self._lost, monotonic=monotonic)
        self._watchers: list[LeaseLost] = []
        self._generations: dict[str, int] = {}
        self._ask: AskRelease | None = None

    @property
    def node_id(self) -> str:
        return self.keeper.leases.node_id

    async def claim(self, stream_id: str) -> Claim:
        """Take or keep ``stream_id``'s lease, or name the node holding it."""
        owner = UNKNOWN_OWNER
        for _ in range(2):  # a lease released between the claim and the look-up: claim again
            lease = await self.keeper.acquire(stream_id)
            if lease is not None:
                self._generations[stream_id] = lease.generation
                return Owned(lease.generation)
            current = await self.keeper.leases.current(stream_id)
            if current is not None:
                owner = current.node_id
                break
        return HeldElsewhere(owner)

    async def release(self, stream_id: str, generation: int) -> None:
        """Release the lease held at ``generation`` (not a later one), within
        :data:`RELEASE_SECONDS`."""
        if self._generations.get(stream_id) != generation:
            return
        del self._generations[stream_id]
        try:
            async with asyncio.timeout(RELEASE_SECONDS):
                await self.keeper.release(stream_id)
        except TimeoutError:
            log.warning("lease of %s not released in time; it expires by itself", stream_id)
        except Exception as exc:
            log.warning("lease of %s not released: %s", stream_id, describe_error(exc))

    def watch(self, on_lost: LeaseLost) -> None:
        self._watchers.append(on_lost)

    def ask_through(self, ask: AskRelease | None) -> None:
        """Send the hand-over requests of :meth:`ask_owner_to_release` through ``ask`` from now
        on (the control bus while it runs; ``None``: nobody is asked)."""
        self._ask = ask

    async def ask_owner_to_release(self, owner_node: str, stream_id: str) -> None:
        """Ask ``owner_node`` to hand ``stream_id`` over (or end it, ``replaced``), which
        releases its lease, so that the newer publish here can claim it. Returns once asked,
        not once released; a request that cannot be sent is logged (the lease then has to
        expire)."""
        ask = self._ask
        if ask is None or owner_node in (self.node_id, UNKNOWN_OWNER):
            return
        try:
            await ask(owner_node, stream_id)
        except Exception as exc:
            log.warning(
                "stream %s: node %s not asked to hand it over: %s",
                stream_id,
                owner_node,
                describe_error(exc),
            )

    def _lost(self, stream_id: str, reason: LossReason) -> None:
        generation = self._generations.pop(stream_id, None)
        if generation is None:
            return
        log.warning("stream %s: lease at generation %d lost (%s)", stream_id, generation, reason)
        for on_lost in self._watchers:
            on_lost(stream_id, generation)
