"""The seam between ingest and whoever knows which stream keys are valid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PublishGrant:
    """What a successful authorization tells the ingest about the stream."""

    stream_id: str
    """Public id of the live stream (24 hex); used for playback paths and logs."""
    record: bool = False
    """Whether this session is recorded."""
    restream: tuple[RestreamTarget, ...] = ()
    """Targets to relay the stream to."""
    reconnect_window_seconds: float = 60.0
    """How long a dropped publisher may reconnect into the same session (0: no window)."""
    max_duration_seconds: float = 43_200.0
    """Longest continuous session; the publisher is disconnected when it is reached."""
    latency_mode: str = "standard"
    """``standard`` (MPEG-TS HLS) or ``low`` (low-latency HLS with fMP4 parts)."""
    renditions: tuple[str, ...] = ("source",)
    """The adaptive-bitrate ladder asked for: ``source`` first, then rung names (the workers
    decide which rungs the publish gets)."""


@dataclass(frozen=True)
class RestreamTarget:
    """One restream destination; ``publish_url`` contains the secret stream key."""

    target_id: str
    """The ``_id`` of the restream target."""
    publish_url: str = field(repr=False)
    """Full URL (``url`` + ``/`` + ``streamKey``); secret, never log it."""
    stream_key: str = field(default="", repr=False)
    """The target's stream key (the end of ``publish_url``), redacted by value from every log
    line, ``lastError`` and stderr tail whatever the URL's shape; secret."""


class PublishDenied(Exception):
    """The key is unknown, deleted or disabled; the message is safe to send to the client."""


class PublishAuthorizer(Protocol):
    """Decides whether a stream key may publish. Implemented by ``api`` against the database."""

    async def authorize_publish(self, stream_key: str, client_address: str) -> PublishGrant:
        """Return the grant for ``stream_key`` or raise :class:`PublishDenied`."""
        ...
