"""The control messages between nodes and what the node a stream is live on does with them.

Every message names a stream by id (never its key or targets: the receiver reads those from the
database):

- ``end`` {``stream_id``, ``reason``}: an operator ended the stream on another node (disable,
  key reset, complete, delete); end it here with ``reason``.
- ``restream_changed`` {``stream_id``}: its restream targets changed; read them and relay to
  them from now on.
- ``release`` {``stream_id``, ``requested_by``}: a newer publish of the stream reached node
  ``requested_by``; stop the stream here (``replaced``): with a reconnect window the session
  is handed over (its recording stored but left open, the session not ended) for that node to
  continue, without one it ends. Either way the lease is released (:mod:`workers.live_paths`),
  so that node can claim it; an admission under way here is turned away.

A message may be lost (the listening connection was away); the bus then calls
:meth:`ControlHandler.resync`, which re-reads what every stream live here became.
"""

from __future__ import annotations

import logging
import re
from typing import cast, get_args

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from api.cluster.bus import Message
from api.cluster.leases import StreamLeases
from api.live.publish_auth import grant_for
from ingest.live import EndReason
from workers.live_paths import LivePaths

log = logging.getLogger(__name__)

END = "end"
RESTREAM_CHANGED = "restream_changed"
RELEASE = "release"

_STREAM_ID = re.compile(r"[0-9a-f]{24}")
_END_REASONS: frozenset[str] = frozenset(get_args(EndReason))


def end_message(stream_id: str, reason: EndReason) -> dict[str, str]:
    return {"stream_id": stream_id, "reason": reason}


def restream_changed_message(stream_id: str) -> dict[str, str]:
    return {"stream_id": stream_id}


def release_message(stream_id: str, requested_by: str) -> dict[str, str]:
    return {"stream_id": stream_id, "requested_by": requested_by}


class ControlHandler:
    """Acts on the control messages addressed to this node, through its live paths."""

    def __init__(
        self,
        paths: LivePaths,
        sessionmaker: async_sessionmaker[AsyncSession],
        leases: StreamLeases,
    ) -> None:
        self._paths = paths
        self._sessionmaker = sessionmaker
        self._leases = leases

    @property
    def node_id(self) -> str:
        return self._leases.node_id

    async def handle(self, message: Message) -> None:
        """Act on ``message``; a malformed one is logged and ignored."""
        stream_id = message.body.get("stream_id", "")
        if not _STREAM_ID.fullmatch(stream_id):
            log.warning("control message %s from %s: no stream id", message.kind, message.sender)
            return
        if message.kind == END:
            reason = message.body.get("reason", "")
            if reason not in _END_REASONS:
                log.warning("control message end from %s: unknown reason", message.sender)
                return
            await self._end(stream_id, cast(EndReason, reason), message.sender)
        elif message.kind == RESTREAM_CHANGED:
            await self._apply_restream(stream_id)
        elif message.kind == RELEASE:
            requester = message.body.get("requested_by", message.sender)
            await self._end(stream_id, "replaced", requester)  # the end releases the lease
        else:
            log.warning("unknown control message %s from %s", message.kind, message.sender)

    async def resync(self) -> None:
        """Control messages may have been lost: bring every stream live here in line with the
        database. A deleted or disabled stream ends, one whose live lease is another node's ends
        (``replaced``), the others relay to their current restream targets. (A key reset or a
        complete leaves nothing to re-read: a lost one is not redone.)"""
        live = [path.stream_id for path in self._paths.paths() if not path.ending]
        if not live:
            return
        async with self._sessionmaker() as session:
            streams = await queries.streams_by_id(session, live)
        owners = await self._leases.owners(live)
        for stream_id in live:
            stream = streams.get(stream_id)
            owner = owners.get(stream_id, self.node_id)
            if stream is None or stream.deleted_at is not None:
                await self._end(stream_id, "deleted", "resync")
            elif stream.disabled:
                await self._end(stream_id, "disabled", "resync")
            elif owner != self.node_id:
                await self._end(stream_id, "replaced", owner)
            else:
                await self._paths.update_restream(stream_id, grant_for(stream).restream)
        log.info("control bus: resynced %d live stream(s)", len(live))

    async def _end(self, stream_id: str, reason: EndReason, source: str) -> None:
        if await self._paths.end(stream_id, reason):
            log.info("live stream %s: live session ended (%s, from %s)", stream_id, reason, source)

    async def _apply_restream(self, stream_id: str) -> None:
        if self._paths.get(stream_id) is None:
            return  # not live here (any more): the next publish reads the targets
        async with self._sessionmaker() as session:
            stream = (await queries.streams_by_id(session, [stream_id])).get(stream_id)
        if stream is None or stream.deleted_at is not None:
            return
        if await self._paths.update_restream(stream_id, grant_for(stream).restream):
            log.info("live stream %s: restream targets changed on another node", stream_id)
