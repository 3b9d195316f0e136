"""Who owns a stream: the seam between the live paths and the stream ownership leases (the
leases themselves are implemented by ``api``, against the database shared by every node).

A stream is live on at most one node, the one holding its lease. :class:`LivePaths
<workers.live_paths.LivePaths>` claims the lease as part of admitting a new session, keeps it
for the whole session (reconnect window included), releases it when the session ends, and ends
the session by itself when it is told the lease was lost. Each ownership has a **generation**,
larger for every later ownership of the stream: what a session writes can carry it, so that an
earlier owner's late writes can be told apart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ingest.live import LiveElsewhere

log = logging.getLogger(__name__)

HANDOVER_SECONDS = 2.0
"""How long an admission asks the owning node to hand a stream over, and claims again, before
it refuses the publish."""
CLAIM_RETRY_SECONDS = 0.2
"""Pause between two claims of a stream another node owns, within :data:`HANDOVER_SECONDS`."""

LeaseLost = Callable[[str, int], None]
"""Told ``(stream_id, generation)`` when this node lost the lease it held at that generation."""


@dataclass(frozen=True)
class Owned:
    """This node holds the stream's lease."""

    generation: int
    """The ownership's fencing token (kept by a claim of a lease this node already holds)."""


@dataclass(frozen=True)
class HeldElsewhere:
    """Another node holds a live lease on the stream."""

    node_id: str


Claim = Owned | HeldElsewhere


class Ownership(Protocol):
    """Stream ownership leases, as the live paths of this node see them."""

    async def claim(self, stream_id: str) -> Claim:
        """Take (or keep) ``stream_id``'s lease and keep renewing it until released; or say
        which node holds it. Raises when it cannot be decided (the database unreachable)."""
        ...

    async def release(self, stream_id: str, generation: int) -> None:
        """Stop renewing the lease held at ``generation`` and end it now, so another node may
        claim at once. Never raises: a lease that cannot be released expires by itself."""
        ...

    def watch(self, on_lost: LeaseLost) -> None:
        """Call ``on_lost`` whenever a lease this node holds is lost: taken over by another
        node, or not renewable before it could expire (the database unreachable)."""
        ...

    async def ask_owner_to_release(self, owner_node: str, stream_id: str) -> None:
        """Ask ``owner_node`` to hand ``stream_id`` over (end it there and release its lease),
        so that the newer publish wins. May return before the owner did; by default it asks
        nobody and returns at once."""
        ...


class SoleOwnership:
    """Leases of a node that shares no database (tests of the media side): every claim is
    granted, a new ownership gets the next generation, nothing is ever lost."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._last: dict[str, int] = {}

    async def claim(self, stream_id: str) -> Claim:
        if stream_id not in self._held:
            self._held[stream_id] = self._last[stream_id] = self._last.get(stream_id, 0) + 1
        return Owned(self._held[stream_id])

    async def release(self, stream_id: str, generation: int) -> None:
        if self._held.get(stream_id) == generation:
            del self._held[stream_id]

    def watch(self, on_lost: LeaseLost) -> None:
        """Nothing is ever lost."""

    async def ask_owner_to_release(self, owner_node: str, stream_id: str) -> None:
        """There is no other owner."""


async def claim_for_publish(
    ownership: Ownership, stream_id: str, handover_seconds: float = HANDOVER_SECONDS
) -> int:
    """Claim ``stream_id`` for a new session and return the generation. While another node
    holds it, ask that node to hand it over and claim again, for ``handover_seconds``; then
    raise :class:`~ingest.live.LiveElsewhere`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + handover_seconds
    while True:
        claim = await ownership.claim(stream_id)
        if isinstance(claim, Owned):
            return claim.generation
        await ownership.ask_owner_to_release(claim.node_id, stream_id)
        if loop.time() >= deadline:
            log.warning("stream %s is live on node %s: publish refused", stream_id, claim.node_id)
            raise LiveElsewhere("stream is live on another node")
        await asyncio.sleep(min(CLAIM_RETRY_SECONDS, max(0.0, deadline - loop.time())))
