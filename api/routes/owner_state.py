"""The live state of streams live on other nodes, in the stream objects any node answers with.

A node knows the live session and relays of the streams live on it only. Every stream object it
renders comes from its own live paths (:func:`api.routes.livestreams.stream_output`); for a
stream that is live on another node (a live lease of that node, by the database's clock), the
object is replaced with the one that node renders, asked once per node for all such streams of
the answer: ``GET /v1/livestreams?id=…`` with the caller's ``Authorization``, marked forwarded
so that the owner answers from its own state. A listing of 100 streams live on three other
nodes costs one query (the leases of the page) and three requests, sent at once.

An owner that cannot be asked leaves the stream ``live`` (its lease says so) without
``currentSession``. On a node alone on its database (SQLite) nothing is looked up: every live
stream is live here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from api.cluster.forwarding import FORWARDED_HEADER, Owner
from api.keys import CLUSTER, FORWARDER, PATHS

StreamObject = dict[str, Any]


def clustered(request: web.Request) -> bool:
    """Whether streams may be live on other nodes for this (not forwarded) request."""
    cluster = request.app.get(CLUSTER)
    shared = cluster is not None and cluster.bus.shared
    return shared and FORWARDED_HEADER not in request.headers


async def with_owners_state(
    request: web.Request, objects: Sequence[StreamObject]
) -> list[StreamObject]:
    """``objects`` (stream objects rendered here), each stream live on another node replaced
    with what that node renders."""
    if not objects or not clustered(request):
        return list(objects)
    paths = request.app[PATHS]
    candidates = [
        o["id"] for o in objects if o["status"] != "disabled" and paths.get(o["id"]) is None
    ]
    owners = await request.app[FORWARDER].owners_elsewhere(candidates)
    if not owners:
        return list(objects)
    by_node: dict[Owner, list[str]] = {}
    for stream_id, owner in owners.items():
        by_node.setdefault(owner, []).append(stream_id)
    answers = await asyncio.gather(
        *(_owners_objects(request, owner, ids) for owner, ids in by_node.items())
    )
    fresh = {stream_id: o for answer in answers for stream_id, o in answer.items()}
    return [
        fresh.get(o["id"]) or ({**o, "status": "live"} if o["id"] in owners else o) for o in objects
    ]


async def with_owner_state(request: web.Request, rendered: StreamObject) -> StreamObject:
    """One stream object, as :func:`with_owners_state` renders it."""
    return (await with_owners_state(request, [rendered]))[0]


async def _owners_objects(
    request: web.Request, owner: Owner, stream_ids: list[str]
) -> dict[str, StreamObject]:
    query = urlencode([("perPage", str(len(stream_ids)))] + [("id", i) for i in stream_ids])
    answer = await request.app[FORWARDER].fetch_json(request, owner, f"/v1/livestreams?{query}")
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        return {}
    wanted = set(stream_ids)
    return {o["id"]: o for o in answer["data"] if isinstance(o, dict) and o.get("id") in wanted}
