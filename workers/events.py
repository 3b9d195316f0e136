"""What the media side tells the durable side about a stream's life (implemented by ``api``,
which records sessions and queues webhooks). Calls never raise into the media path: the
live path logs and carries on if the database is away."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ingest.live import EndReason

__all__ = [
    "EndReason",
    "LeftOpen",
    "NoStreamEvents",
    "RestreamState",
    "SessionInfo",
    "StreamEvents",
]

RestreamState = Literal["connected", "failed"]


@dataclass(frozen=True)
class SessionInfo:
    """One live session of one stream."""

    stream_id: str
    """Public id of the stream."""
    session_id: str
    """24-hex id of the session (stable across reconnects inside the window)."""
    started_at: float
    """Unix time the session began."""
    client_address: str
    """``host:port`` of the publisher that began it."""
    lease_generation: int | None = None
    """The generation of the stream's ownership lease this node holds for the session."""


class StreamEvents(Protocol):
    """Receives the life events of live sessions."""

    async def session_started(self, info: SessionInfo) -> None:
        """A new live session began (``livestream.started``)."""
        ...

    async def session_reconnected(self, info: SessionInfo, client_address: str) -> None:
        """A publisher came back inside the reconnect window (``livestream.reconnected``)."""
        ...

    async def session_ended(
        self, info: SessionInfo, *, ended_at: float, reason: EndReason, bytes_in: int
    ) -> None:
        """The session is over (``livestream.ended``)."""
        ...

    async def restream_changed(
        self, info: SessionInfo, *, target_id: str, state: RestreamState, last_error: str | None
    ) -> None:
        """A restream target went live or gave up (``restream.connected``/``restream.failed``)."""
        ...


class NoStreamEvents:
    """Events go nowhere (tests of the media side, or a node without a database)."""

    async def session_started(self, info: SessionInfo) -> None:
        """Ignore."""

    async def session_reconnected(self, info: SessionInfo, client_address: str) -> None:
        """Ignore."""

    async def session_ended(
        self, info: SessionInfo, *, ended_at: float, reason: EndReason, bytes_in: int
    ) -> None:
        """Ignore."""

    async def restream_changed(
        self, info: SessionInfo, *, target_id: str, state: RestreamState, last_error: str | None
    ) -> None:
        """Ignore."""


class LeftOpen(Protocol):
    """Sessions an unclean end (a crash, a lost node) left without an end, as start-up
    recovery sees them (implemented by ``api``)."""

    async def streams_left_open(self) -> set[str]:
        """The streams that have a session without an end."""
        ...

    async def close_left_open(self, stream_id: str, before_generation: int) -> int:
        """End (reason ``error``) the sessions of ``stream_id`` left open by ownerships older
        than ``before_generation`` (or of unknown generation); returns how many."""
        ...
