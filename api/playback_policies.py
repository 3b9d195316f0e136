"""The playback policies of streams, as :class:`api.playback_tokens.PlaybackGuard` reads them on
every playback request: from memory, and from the database at most once per
:data:`POLICY_TTL_SECONDS` for all the streams being played together.

A policy is never older than its TTL when it decides a request, but reading it once per stream
and TTL cost a database round trip per stream every TTL (a viewer reloading a playlist every
2 s missed the cache nearly every time) and let every request that missed at the same moment
query on its own. So:

- one lookup at a time: a request that misses while a lookup covering its stream is under way
  waits for that one (no stampede when a policy expires under hundreds of viewers);
- a lookup refreshes, along with the stream that missed, every cached policy that expires
  within the next half TTL, in one query: streams played together come to expire together, so
  a node playing many streams asks once per TTL for all of them (refreshed early, a policy is
  only ever fresher).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import DATABASE_ERRORS
from api.models import LiveStream

POLICY_TTL_SECONDS = 2.0
"""How long a stream's playback policy is trusted without asking the database again."""
BATCH_LIMIT = 500
"""At most this many streams' policies per lookup query."""


@dataclass(frozen=True)
class Policy:
    """What playback of one stream needs: its account and whether a token is required."""

    account_id: str
    signed: bool


class PolicyCache:
    """Stream policies by stream id (see the module docstring); ``max_size`` bounds it."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], float] = time.time,
        ttl: float = POLICY_TTL_SECONDS,
        max_size: int = 10_000,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._ttl = ttl
        self._max_size = max_size
        self._policies: dict[str, tuple[float, Policy | None]] = {}
        self._lookup: asyncio.Future[dict[str, Policy | None]] | None = None
        self._looking_up: frozenset[str] = frozenset()
        self._changed_meanwhile: set[str] = set()
        self.lookups = 0
        """Lookup queries made (for tests and the curious)."""

    def forget(self, stream_id: str) -> None:
        """``stream_id``'s policy changed: read it again on its next request (a lookup under
        way may have read it before the change: its answer for that stream is not kept)."""
        self._policies.pop(stream_id, None)
        if self._lookup is not None:
            self._changed_meanwhile.add(stream_id)

    async def get(self, stream_id: str) -> Policy | None:
        """The stream's policy (``None``: no such stream). While the database is away, what
        was known stays in force; what was not raises the database's error."""
        cached = self._policies.get(stream_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        while self._lookup is not None and stream_id not in self._looking_up:
            await asyncio.wait({self._lookup})  # one query at a time; then see again
            cached = self._policies.get(stream_id)
            if cached is not None and cached[0] > self._clock():
                return cached[1]
        lookup = self._lookup
        if lookup is None:
            lookup = self._start_lookup(stream_id)
        try:
            found = await asyncio.shield(lookup)
        except DATABASE_ERRORS:
            if cached is None:
                raise
            return cached[1]  # the database is away: what was known stays in force
        return found.get(stream_id)

    def _start_lookup(self, stream_id: str) -> asyncio.Future[dict[str, Policy | None]]:
        soon = self._clock() + self._ttl / 2
        due = [s for s, (expires, _) in self._policies.items() if expires <= soon]
        ids = frozenset([stream_id, *due[: BATCH_LIMIT - 1]])
        self._looking_up = ids
        self._lookup = lookup = asyncio.ensure_future(self._read(ids))
        lookup.add_done_callback(self._lookup_done)
        return lookup

    def _lookup_done(self, lookup: asyncio.Future[dict[str, Policy | None]]) -> None:
        self._lookup = None
        self._looking_up = frozenset()
        changed, self._changed_meanwhile = self._changed_meanwhile, set()
        if lookup.cancelled() or lookup.exception() is not None:
            return
        expires = self._clock() + self._ttl
        if len(self._policies) > self._max_size:
            self._policies.clear()
        for stream_id, policy in lookup.result().items():
            if stream_id not in changed:
                self._policies[stream_id] = (expires, policy)

    async def _read(self, ids: Collection[str]) -> dict[str, Policy | None]:
        self.lookups += 1
        statement = select(LiveStream.id, LiveStream.account_id, LiveStream.playback_policy)
        async with self._sessions() as session:
            rows = await session.execute(statement.where(LiveStream.id.in_(ids)))
            found: dict[str, Policy | None] = {
                row[0]: Policy(row[1], row[2] == "signed") for row in rows
            }
        return {stream_id: found.get(stream_id) for stream_id in ids}
