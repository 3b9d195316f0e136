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
    "NoResume",
    "NoStreamEvents",
    "RestreamState",
    "Resumed",
    "SessionInfo",
    "SessionResume",
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


@dataclass(frozen=True)
class Resumed:
    """A session begun by an earlier owner of the stream (another node, or this one before its
    lease lapsed) that this ownership continues."""

    session_id: str
    started_at: float
    """Unix time the session began (on the earlier owner)."""
    client_address: str
    """``host:port`` of the publisher that began it."""
    reconnects: int
    """Reconnects so far, this one included."""
    recording_id: str | None
    """The session's recording, taken over too; ``None`` when it had none that is still open
    (a new one begins if the stream is recorded)."""


class SessionResume(Protocol):
    """Continues, on a new ownership of a stream, the session an earlier owner left open
    (implemented by ``api``): a takeover inside the stream's reconnect window is a reconnect,
    not a new session."""

    shared: bool
    """Whether other nodes can continue a session begun here (they share the database): a
    drain then hands sessions over to the stream's next owner instead of ending them."""

    async def resume(
        self, stream_id: str, generation: int, *, window: float, client_address: str
    ) -> Resumed | None:
        """Take over, for ownership ``generation``, the open session of the previous ownership
        of ``stream_id`` if its owner was last seen no longer than ``window`` seconds ago
        (``livestream.reconnected``); ``None`` when there is none (or it cannot be decided).
        Never raises."""
        ...

    async def close_older(self, stream_id: str, generation: int) -> int:
        """End (reason ``lease_lost``) the sessions of ``stream_id`` that ownerships older than
        ``generation`` left open; returns how many. Raises when the database cannot be
        reached."""
        ...


class NoResume:
    """Nothing is ever continued (a node alone, without a database shared with others)."""

    shared = False

    async def resume(
        self, stream_id: str, generation: int, *, window: float, client_address: str
    ) -> Resumed | None:
        """Nothing to continue."""
        return None

    async def close_older(self, stream_id: str, generation: int) -> int:
        """Nothing is left open."""
        return 0
