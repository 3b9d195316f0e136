"""The database-backed :class:`ingest.authorizer.PublishAuthorizer`."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from api.models import LiveStream
from api.pool_wait import when_pool_free
from ingest.authorizer import PublishDenied, PublishGrant, RestreamTarget
from workers.renditions import decode_renditions

log = logging.getLogger(__name__)

MAX_STREAM_KEY_LENGTH = 64
"""Longer keys cannot exist; they are refused without a query."""
BUSY_PATIENCE_SECONDS = 15.0
"""How long a publish keeps waiting while every pooled database connection is busy (many
encoders starting at once). The pool's own wait is short, so that API calls fail fast while the
database is away; a publisher would rather wait than be refused."""


class DatabasePublishAuthorizer:
    """Grants a publish to the key of a live stream that is not deleted, not disabled and whose
    account is active. Stream keys never reach the log; the stream id and client address do."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        busy_patience: float = BUSY_PATIENCE_SECONDS,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._busy_patience = busy_patience

    async def authorize_publish(self, stream_key: str, client_address: str) -> PublishGrant:
        """Return the grant for ``stream_key`` or raise :class:`PublishDenied`."""
        stream = None
        if 0 < len(stream_key) <= MAX_STREAM_KEY_LENGTH:
            stream = await self._find(stream_key, client_address)
        if stream is None:
            log.info("publish from %s refused: unknown stream key", client_address)
            raise PublishDenied("unknown stream key")
        if stream.disabled:
            log.info("publish from %s refused: stream %s is disabled", client_address, stream.id)
            raise PublishDenied("stream is disabled")
        log.info("publish from %s granted for live stream %s", client_address, stream.id)
        return grant_for(stream)

    async def _find(self, stream_key: str, client_address: str) -> LiveStream | None:
        """Look the key up, waiting up to ``busy_patience`` for a pooled connection."""

        async def find() -> LiveStream | None:
            async with self._sessionmaker() as session:
                return await queries.find_publishable_stream(session, stream_key)

        def waiting() -> None:
            log.info("publish from %s waits: every database connection is busy", client_address)

        return await when_pool_free(find, patience=self._busy_patience, on_wait=waiting)


def grant_for(stream: LiveStream) -> PublishGrant:
    """What the ingest needs to know about ``stream`` (targets loaded)."""
    return PublishGrant(
        stream_id=stream.id,
        record=stream.record,
        restream=tuple(
            RestreamTarget(
                target_id=target.id,
                publish_url=f"{target.url.rstrip('/')}/{target.stream_key}",
                stream_key=target.stream_key,
            )
            for target in stream.targets
        ),
        reconnect_window_seconds=float(stream.reconnect_window_seconds),
        max_duration_seconds=float(stream.max_duration_seconds),
        latency_mode=stream.latency_mode,
        renditions=decode_renditions(stream.renditions),
    )
