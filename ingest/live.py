"""The registry of streams that are live right now on this node (read by the API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class LiveEntry:
    """One live publisher, as the API may see it."""

    stream_id: str
    """Public id of the stream."""
    client_address: str
    """``host:port`` of the publisher."""
    started_at: float
    """Wall-clock start (``time.time()``)."""
    disconnect: Callable[[str], Awaitable[None]] = field(repr=False)
    """Ends the publish; the argument is the reason logged and sent to the client."""


class LiveStreams:
    """Which stream ids are live, and a way to end them. Owned by the ingest server."""

    def __init__(self) -> None:
        self._entries: dict[str, LiveEntry] = {}

    def add(self, entry: LiveEntry) -> None:
        """Register a new live publisher (replacing a stale one is the session's job)."""
        self._entries[entry.stream_id] = entry

    def remove(self, entry: LiveEntry) -> None:
        """Forget ``entry`` if it is still the registered one."""
        if self._entries.get(entry.stream_id) is entry:
            del self._entries[entry.stream_id]

    def get(self, stream_id: str) -> LiveEntry | None:
        """The live entry of ``stream_id``, if any."""
        return self._entries.get(stream_id)

    def is_live(self, stream_id: str) -> bool:
        """Whether ``stream_id`` has a publisher now."""
        return stream_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    async def end(self, stream_id: str, reason: str) -> bool:
        """Disconnect the publisher of ``stream_id``; returns whether one was live."""
        entry = self._entries.get(stream_id)
        if entry is None:
            return False
        await entry.disconnect(reason)
        return True
