"""Live playback from any node: a node that does not have a stream's live path forwards its
playlist and segment requests (and ``GET /v1/livestreams/{id}``, whose live state only the
owner knows) to the node holding the stream's live lease.

The owner is found with one query (the lease joined to the owner's registry row, both by
primary key) and remembered for :data:`OWNER_CACHE_SECONDS`. The forwarded request carries
:data:`FORWARDED_HEADER`; a node never forwards a request that has it, so a registry row
pointing at the wrong node cannot make requests go round in circles. The owner's answer (status,
body, content and caching headers) is passed on as it comes; an owner that cannot be reached
is a 502 with the JSON error shape, within the short timeouts below.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
from aiohttp import web
from sqlalchemy import Boolean, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.clock import clock_of
from api.errors import ApiError
from api.keys import DB_SESSIONMAKER, FORWARDER, OWNERSHIP, PATHS, REQUEST_ID, SETTINGS
from api.middlewares import REQUEST_ID_HEADER
from ingest.ratelimit import WarningRateLimiter
from workers.llhls_output import BLOCKING_TARGET_DURATIONS

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Liverelay-Forwarded"
"""Marks a request one node forwarded to another: the receiver answers it from its own files."""
OWNER_CACHE_SECONDS = 1.0
"""How long a stream's owner (or its having none) is remembered."""
CONNECT_SECONDS = 2.0
"""Bound of connecting to the owner."""
READ_SECONDS = 5.0
"""Bound of waiting for each part of the owner's answer."""
BLOCKING_MARGIN_SECONDS = 5.0
"""A playlist or media request the owner may hold (low-latency HLS: a blocking reload, a
hinted part) may take this much longer than the owner's longest wait."""
_BLOCKING_QUERY = ("_HLS_msn", "_HLS_part", "_HLS_skip")
"""Query parameters of low-latency HLS passed on to the owner (nothing else is)."""
WARNING_INTERVAL_SECONDS = 60.0
"""At most one warning about an unreachable owner node per node in this time."""
_CACHE_LIMIT = 4096
_CHUNK_BYTES = 64 * 1024
_REQUEST_HEADERS = ("Range", "If-None-Match", "If-Modified-Since", "If-Range")
_RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Cache-Control",
    "ETag",
    "Last-Modified",
    "Accept-Ranges",
    "Content-Range",
)


@dataclass(frozen=True)
class Owner:
    """The node holding a stream's live lease (or that wrote a recording)."""

    node_id: str
    internal_url: str


@dataclass(frozen=True)
class Writer:
    """The node that wrote a recording on its disk, as the registry knows it."""

    node: Owner
    up: bool
    """Registered, not stopped, heartbeat within the lease lifetime."""


class PlaybackForwarder:
    """Finds the owner of a stream live elsewhere and passes playback requests on to it."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: aiohttp.ClientSession,
        node_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = OWNER_CACHE_SECONDS,
        lost_after: float = 10.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._http = http
        self.node_id = node_id
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lost_after = lost_after
        self._owners: dict[str, tuple[float, Owner | None]] = {}
        self._warnings = WarningRateLimiter(WARNING_INTERVAL_SECONDS, clock=clock)

    async def owner_elsewhere(self, stream_id: str) -> Owner | None:
        """The other node with a live lease on ``stream_id`` (``None``: no live lease, or this
        node's own)."""
        now = self._clock()
        cached = self._owners.get(stream_id)
        if cached is not None and cached[0] > now:
            owner = cached[1]
        else:
            owner = await self._look_up(stream_id)
            if len(self._owners) >= _CACHE_LIMIT:
                self._owners = {k: v for k, v in self._owners.items() if v[0] > now}
            self._owners[stream_id] = (now + self._cache_seconds, owner)
        return None if owner is None or owner.node_id == self.node_id else owner

    async def _look_up(self, stream_id: str) -> Owner | None:
        async with self._sessionmaker() as session:
            statement = text(
                "SELECT l.node_id, n.internal_url FROM stream_leases l"
                " JOIN cluster_nodes n ON n.id = l.node_id"
                f" WHERE l.stream_id = :stream_id AND l.expires_at > {clock_of(session).now}"
            ).columns(node_id=String, internal_url=String)
            row = (await session.execute(statement, {"stream_id": stream_id})).one_or_none()
        return None if row is None else Owner(row.node_id, row.internal_url)

    async def owners_elsewhere(self, stream_ids: Collection[str]) -> dict[str, Owner]:
        """The other node with a live lease on each of ``stream_ids`` that has one (one query,
        not cached: a listing asks once)."""
        if not stream_ids:
            return {}
        async with self._sessionmaker() as session:
            statement = (
                text(
                    "SELECT l.stream_id, l.node_id, n.internal_url FROM stream_leases l"
                    " JOIN cluster_nodes n ON n.id = l.node_id"
                    " WHERE l.stream_id IN :stream_ids AND l.node_id <> :me"
                    f" AND l.expires_at > {clock_of(session).now}"
                )
                .bindparams(bindparam("stream_ids", expanding=True))
                .columns(stream_id=String, node_id=String, internal_url=String)
            )
            params = {"stream_ids": list(stream_ids), "me": self.node_id}
            rows = (await session.execute(statement, params)).all()
        return {row.stream_id: Owner(row.node_id, row.internal_url) for row in rows}

    async def writer_elsewhere(self, recording_id: str) -> Writer | None:
        """The other node whose data directory has recording ``recording_id`` (of the nodes
        registered with that directory, the one up, else the one seen last); ``None``: this
        node, or not known (no such recording, or written before directories were recorded).
        A node with no registry row left is named by the directory's id."""
        async with self._sessionmaker() as session:
            clock = clock_of(session)
            statement = text(
                "SELECT r.data_id, n.id, n.internal_url, (n.stopped_at IS NULL"
                f" AND n.last_seen_at >= {clock.plus('lost')}) AS up FROM recordings r"
                " LEFT JOIN cluster_nodes n ON n.data_id = r.data_id WHERE r.id = :id"
                " AND r.status <> 'deleted'"
                " ORDER BY (n.stopped_at IS NULL"
                f" AND n.last_seen_at >= {clock.plus('lost')}) DESC, n.last_seen_at DESC"
                " LIMIT 1"
            ).columns(data_id=String, id=String, internal_url=String, up=Boolean)
            params = {"id": recording_id, "lost": -self._lost_after}
            row = (await session.execute(statement, params)).one_or_none()
        if row is None or row.data_id is None or row.id == self.node_id:
            return None
        if row.id is None:
            return Writer(Owner(f"(data directory {row.data_id})", ""), False)
        return Writer(Owner(row.id, row.internal_url), bool(row.up))

    async def fetch_json(self, request: web.Request, owner: Owner, path: str) -> Any | None:
        """What ``owner`` answers to a ``GET`` of ``path`` with the caller's credentials (its
        ``Authorization``, or the console's session cookie: the session table is shared), parsed
        JSON, or ``None`` (logged) when it cannot be reached or does not answer 200."""
        headers = {FORWARDED_HEADER: "1", REQUEST_ID_HEADER: request[REQUEST_ID]}
        for name in ("Authorization", "Cookie"):
            if name in request.headers:
                headers[name] = request.headers[name]
        url = f"{owner.internal_url.rstrip('/')}{path}"
        try:
            async with self._http.get(url, headers=headers, allow_redirects=False) as upstream:
                if upstream.status == 200:
                    return await upstream.json()
                reason: BaseException = RuntimeError(f"answered {upstream.status}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            reason = exc
        self._warn(owner, reason)
        return None

    async def forward(
        self,
        request: web.Request,
        owner: Owner,
        path: str,
        *,
        also: tuple[str, ...] = (),
        recording: bool = False,
        blocking: bool = False,
        query: tuple[str, ...] = (),
    ) -> web.StreamResponse:
        """Answer ``request`` with what ``owner`` answers to the same method on ``path`` (with
        the request's conditional and range headers, and those named in ``also``); with
        ``recording``, ``owner`` is the node that wrote the recording asked for. ``blocking``:
        live playback the owner may hold back (a low-latency blocking reload or hinted part):
        its ``_HLS_*`` query parameters are passed on and the answer may take up to
        :func:`blocking_read_seconds`. ``query``: more query parameters to pass on."""
        names = (*_REQUEST_HEADERS, *also)
        headers = {name: request.headers[name] for name in names if name in request.headers}
        headers[FORWARDED_HEADER] = "1"
        headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
        url = f"{owner.internal_url.rstrip('/')}{path}"
        params = {k: request.query[k] for k in _BLOCKING_QUERY if blocking and k in request.query}
        params.update({k: request.query[k] for k in query if k in request.query})
        if "token" in request.query:  # a signed stream's playback token: the owner checks it
            params["token"] = request.query["token"]
        timeout = None
        if blocking:
            read = blocking_read_seconds(request.app[SETTINGS].hls_segment_seconds)
            timeout = aiohttp.ClientTimeout(
                total=None, connect=CONNECT_SECONDS, sock_connect=CONNECT_SECONDS, sock_read=read
            )
        try:
            upstream = await self._http.request(
                request.method,
                url,
                headers=headers,
                params=params,
                allow_redirects=False,
                timeout=timeout,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._unreachable(request, owner, exc, recording)
        async with upstream:
            response = web.StreamResponse(status=upstream.status)
            for name in _RESPONSE_HEADERS:
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            origin = request.app[SETTINGS].cors_allow_origin
            response.headers["Access-Control-Allow-Origin"] = origin
            await response.prepare(request)
            if request.method != "HEAD":
                try:
                    async for chunk in upstream.content.iter_chunked(_CHUNK_BYTES):
                        await response.write(chunk)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Too late for an error status: close the connection, so that the viewer
                    # sees a cut body rather than a whole one.
                    self._warn(owner, exc)
                    request.protocol.force_close()
                    return response
            await response.write_eof()
        return response

    def _unreachable(
        self, request: web.Request, owner: Owner, exc: BaseException, recording: bool
    ) -> NoReturn:
        self._owners.pop(request.match_info.get("id", ""), None)
        self._warn(owner, exc)
        if recording:
            raise ApiError(
                502,
                f"the recording is on the disk of node {owner.node_id}, which cannot be reached",
                code="recording_node_unreachable",
            )
        raise ApiError(
            502,
            f"the stream is live on node {owner.node_id}, which cannot be reached",
            code="owner_unreachable",
        )

    def _warn(self, owner: Owner, exc: BaseException) -> None:
        held_back = self._warnings.allow(owner.node_id)
        if held_back is not None:
            log.warning(
                "cannot forward to node %s at %s: %s (%d more held back)",
                owner.node_id,
                owner.internal_url,
                str(exc) or type(exc).__name__,
                held_back,
            )


def blocking_read_seconds(segment_seconds: float) -> float:
    """How long a forwarded live playback request may wait for the owner's answer: longer
    than the owner holds a low-latency request (:data:`workers.llhls_output.
    BLOCKING_TARGET_DURATIONS` target durations)."""
    target = math.ceil(segment_seconds)
    return max(READ_SECONDS, BLOCKING_TARGET_DURATIONS * target + BLOCKING_MARGIN_SECONDS)


async def owner_elsewhere(request: web.Request, stream_id: str) -> Owner | None:
    """The node to forward a request about ``stream_id`` to: the one holding the stream's live
    lease, when this node has no live path of it and the request was not forwarded already."""
    app = request.app
    if FORWARDED_HEADER in request.headers or app[PATHS].get(stream_id) is not None:
        return None
    return await app[FORWARDER].owner_elsewhere(stream_id)


async def forwarding_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the app's one HTTP client session for forwarded playback, closed at
    clean-up."""
    timeout = aiohttp.ClientTimeout(
        total=None, connect=CONNECT_SECONDS, sock_connect=CONNECT_SECONDS, sock_read=READ_SECONDS
    )
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
        app[FORWARDER] = PlaybackForwarder(
            app[DB_SESSIONMAKER],
            http,
            app[OWNERSHIP].node_id,
            lost_after=app[SETTINGS].lease_seconds,
        )
        yield
