"""Operator commands that must reach the node a stream is live on, whichever node the API call
came to. The routes call these once their change is committed.

The stream is handled here when its live path is on this node; otherwise, when a live lease
names another node as its owner, that node is told over the control bus
(:mod:`api.cluster.control`) and acts within moments. With no live lease the stream is live
nowhere, and the committed change is all there is to do. On a node alone on its database
(SQLite) nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from aiohttp import web

from api.cluster.control import END, RESTREAM_CHANGED, end_message, restream_changed_message
from api.database import describe_error
from api.keys import CLUSTER, PATHS
from api.live.media_context import end_live
from ingest.authorizer import RestreamTarget
from ingest.live import EndReason

log = logging.getLogger(__name__)


async def end_everywhere(app: web.Application, stream_id: str, reason: EndReason) -> bool:
    """End the live session of ``stream_id`` here, or ask its owner to. Returns whether it was
    live here. Failures are logged, not raised: the committed change stands either way."""
    try:
        ended = await end_live(app, stream_id, reason)
    except Exception:
        log.exception("ending the live session of stream %s (%s) failed", stream_id, reason)
        return False
    if ended:
        log.info("live stream %s: live session ended (%s)", stream_id, reason)
        return True
    await _tell_owner(app, stream_id, END, end_message(stream_id, reason))
    return False


async def restream_changed_everywhere(
    app: web.Application, stream_id: str, targets: Sequence[RestreamTarget]
) -> bool:
    """Relay ``stream_id`` to ``targets`` (its committed list) from now on if it is live here,
    or tell its owner to re-read them. Returns whether it was live here."""
    if await app[PATHS].update_restream(stream_id, targets):
        log.info("live stream %s: restream targets changed while live", stream_id)
        return True
    await _tell_owner(app, stream_id, RESTREAM_CHANGED, restream_changed_message(stream_id))
    return False


async def _tell_owner(
    app: web.Application, stream_id: str, kind: str, body: Mapping[str, str]
) -> None:
    cluster = app.get(CLUSTER)
    if cluster is None or not cluster.bus.shared:
        return
    try:
        owner = (await cluster.leases.leases.owners([stream_id])).get(stream_id)
        if owner is None or owner == cluster.node_id:
            return
        await cluster.bus.send(kind, body, to=owner)
    except Exception as exc:
        log.warning(
            "live stream %s: node owning it not told (%s): %s", stream_id, kind, describe_error(exc)
        )
        return
    log.info("live stream %s: %s sent to node %s", stream_id, kind, owner)
