"""The registry of streams that are live right now on this node (read by the API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

EndReason = Literal[
    "publisher_left",
    "completed",
    "disabled",
    "reset",
    "timed_out",
    "deleted",
    "max_duration",
    "shutdown",
    "error",
]
"""Why a live session ended: the publisher stopped (or its reconnect window ran out), the
operator completed/disabled/reset/deleted the stream, the publisher timed out, the session hit
its maximum duration, the server shut down, or no output could start."""

END_MESSAGES: dict[EndReason, str] = {
    "publisher_left": "the publisher stopped",
    "completed": "the live stream was completed",
    "disabled": "the live stream was disabled",
    "reset": "the stream key was reset",
    "timed_out": "no data from the publisher",
    "deleted": "the live stream was deleted",
    "max_duration": "the session reached its maximum duration",
    "shutdown": "the server is shutting down",
    "error": "the stream could not be processed",
}
"""What a publisher is told (in ``onStatus``) when the server ends its publish."""


@dataclass
class LiveEntry:
    """One live publisher, as the API may see it."""

    stream_id: str
    """Public id of the stream."""
    client_address: str
    """``host:port`` of the publisher."""
    started_at: float
    """Wall-clock start (``time.time()``)."""
    disconnect: Callable[[EndReason, bool], Awaitable[None]] = field(repr=False)
    """Ends the publish for a reason; ``clean=False`` lets a reconnect continue the session
    (used when a new publisher with the same key replaces a stale one)."""


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

    def stream_ids(self) -> list[str]:
        """The ids of the streams live now (a snapshot)."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    async def end(self, stream_id: str, reason: EndReason) -> bool:
        """Disconnect the publisher of ``stream_id`` and end its session; returns whether one
        was live."""
        entry = self._entries.get(stream_id)
        if entry is None:
            return False
        await entry.disconnect(reason, True)
        return True
