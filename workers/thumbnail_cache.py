"""The thumbnail cache: each thumbnail is made at most once per interval, however many ask.

A thumbnail is keyed by what it shows (:class:`ThumbnailKey`: the stream or recording, the
format, the requested size and time). :meth:`ThumbnailCache.get` answers from a fresh entry;
otherwise the first request starts the one decode of that key and every request arriving
meanwhile waits for the same result (single flight), so a hundred requests a second for one
stream's thumbnail cost one decode per interval. A request that goes away does not cancel the
decode the others wait for. Once a thumbnail has been made, requests no longer wait for the
next one: for one more interval the old one is answered while the new one is made.

Decodes run in worker threads, at most :data:`MAX_DECODES` at a time, so the event loop never
blocks on FFmpeg. Entries are bounded in count and bytes and evicted least recently used first;
:meth:`ThumbnailCache.forget` drops a stream's entries when its session ends. Media without a
picture (:class:`~workers.thumbnail_codec.ThumbnailUnavailable`) is remembered like a
thumbnail, so an audio-only stream is not decoded again on every request either.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from workers.thumbnail_codec import Thumbnail, ThumbnailUnavailable

MAX_ENTRIES = 1000
"""Thumbnails kept at most."""
MAX_BYTES = 64 * 1024 * 1024
"""Bytes of encoded thumbnails kept at most."""
MAX_DECODES = 2
"""Decodes running at once (each takes a worker thread); further ones wait their turn."""

T = TypeVar("T")


@dataclass(frozen=True)
class ThumbnailKey:
    """What one thumbnail shows."""

    source: str
    """The stream id (live) or recording id it is made from."""
    kind: str
    """``live`` or ``recording``."""
    extension: str
    """Image format: ``jpg`` or ``png``."""
    width: int | None
    """Requested width (``None``: not given)."""
    height: int | None
    """Requested height (``None``: not given)."""
    at: float | None = None
    """Requested time into a recording, seconds (``None``: the default point)."""


@dataclass(frozen=True)
class _Entry:
    expires_at: float
    result: Thumbnail | ThumbnailUnavailable

    @property
    def size(self) -> int:
        return len(self.result.data) if isinstance(self.result, Thumbnail) else 0


class ThumbnailCache:
    """Thumbnails made lately, and the decodes under way (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        max_decodes: int = MAX_DECODES,
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[ThumbnailKey, _Entry] = OrderedDict()
        self._bytes = 0
        self._flights: dict[ThumbnailKey, asyncio.Future[Thumbnail | ThumbnailUnavailable]] = {}
        self._decode_slots = asyncio.Semaphore(max_decodes)
        self.decoded = 0
        """Thumbnails made (``make()`` calls: decodes run, successful or not)."""
        self.from_cache = 0
        """Requests answered from the cache (fresh, or stale while it is made again) or by
        another request's decode."""

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def in_flight(self) -> int:
        """Decodes under way."""
        return len(self._flights)

    @property
    def bytes(self) -> int:
        """Bytes of the thumbnails kept."""
        return self._bytes

    async def get(
        self, key: ThumbnailKey, make: Callable[[], Awaitable[Thumbnail]], ttl: float
    ) -> Thumbnail:
        """The thumbnail of ``key``: from the cache while younger than ``ttl`` seconds, else
        from ``make()`` (one call for all concurrent requests of ``key``). A thumbnail older
        than ``ttl`` but younger than twice that is answered at once while ``make()`` runs for
        the next requests (stale while revalidating), so only the first request of a key ever
        waits for a decode. Raises what ``make()`` raises; a :class:`ThumbnailUnavailable` is
        kept like a thumbnail."""
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and entry.expires_at > now:
            self._entries.move_to_end(key)
            self.from_cache += 1
            return _unwrap(entry.result)
        flight = self._flights.get(key)
        shared = flight is not None
        if flight is None:
            flight = asyncio.ensure_future(self._make(key, make, ttl))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        if (
            entry is not None
            and isinstance(entry.result, Thumbnail)
            and now < entry.expires_at + ttl
        ):
            self.from_cache += 1  # stale by less than one interval: kept while it is made again
            return entry.result
        if shared:
            self.from_cache += 1
        return _unwrap(await asyncio.shield(flight))

    async def run_decode(self, work: Callable[[], T]) -> T:
        """Run the blocking ``work`` (a decode) in a worker thread, in turn with the others."""
        async with self._decode_slots:
            return await asyncio.to_thread(work)

    def forget(self, source: str) -> None:
        """Drop every thumbnail of ``source`` (a stream whose session ended)."""
        for key in [k for k in self._entries if k.source == source]:
            self._bytes -= self._entries.pop(key).size

    def _landed(
        self, key: ThumbnailKey, flight: asyncio.Future[Thumbnail | ThumbnailUnavailable]
    ) -> None:
        self._flights.pop(key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have gone

    async def _make(
        self, key: ThumbnailKey, make: Callable[[], Awaitable[Thumbnail]], ttl: float
    ) -> Thumbnail | ThumbnailUnavailable:
        self.decoded += 1
        result: Thumbnail | ThumbnailUnavailable
        try:
            result = await make()
        except ThumbnailUnavailable as exc:
            result = exc
        self._store(key, _Entry(self._clock() + ttl, result))
        return result

    def _store(self, key: ThumbnailKey, entry: _Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        if entry.size > self._max_bytes:
            return
        self._entries[key] = entry
        self._bytes += entry.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size


def _unwrap(result: Thumbnail | ThumbnailUnavailable) -> Thumbnail:
    if isinstance(result, ThumbnailUnavailable):
        raise type(result)(str(result))  # a fresh one: the kept one gathers no tracebacks
    return result
