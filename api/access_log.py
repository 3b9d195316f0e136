"""The HTTP access log (logger ``aiohttp.access``) by ``LIVERELAY_ACCESS_LOG``.

- ``all``: one line per request, as aiohttp writes it.
- ``api`` (the default): one line per request, except playback requests (live and recorded
  playlists, segments, parts) answered without an error: those are counted per stream (or
  recording) and summed up in one line per stream and :data:`SUMMARY_SECONDS`, written by the
  first playback request of that stream after the interval. Playback answered with a status of
  400 or more keeps its own line. A low-latency viewer makes about ten requests a second, and a
  formatted line for each was the largest single cost of serving them.

Per-route counts of every request, playback included, are in ``/metrics``
(``liverelay_http_request_duration_seconds_count``).

Whatever the mode, playback tokens are left out: a signed stream's viewers carry their token in
the query (``?token=…``), and a log line must never hold one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from api.keys import ACCESS_LOG_POLICY

ACCESS_LOG_MODES = ("all", "api")
SUMMARY_SECONDS = 60.0
"""How often (at most) one stream's playback is summed up in the access log."""
PLAYBACK_ROUTES = {
    "/live/{id}/index.m3u8": "stream",
    "/live/{id}/storage/index.m3u8": "stream",
    "/live/{id}/{segment}": "stream",
    "/recordings/{recordingId}/index.m3u8": "recording",
    "/recordings/{recordingId}/{segment}": "recording",
    "/live/{id}/thumbnail.jpg": "stream",
    "/live/{id}/thumbnail.png": "stream",
    "/recordings/{recordingId}/thumbnail.jpg": "recording",
    "/recordings/{recordingId}/thumbnail.png": "recording",
}
"""Route templates of playback, and what their first path parameter names."""
_TOKEN = re.compile(r"(?<=[?&]token=)[^&\s\"]*")


def redact_tokens(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced by ``***``."""
    return _TOKEN.sub("***", text)


class PlaybackTally:
    """Counts of one stream's (or recording's) playback requests since its last summary."""

    __slots__ = ("requests", "since")

    def __init__(self, since: float) -> None:
        self.requests = 0
        self.since = since


class AccessLogPolicy:
    """Which requests get an access-log line; the playback tallies of ``api`` mode."""

    def __init__(
        self,
        mode: str,
        *,
        logger: logging.Logger,
        interval: float = SUMMARY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._tallies: dict[tuple[str, str], PlaybackTally] = {}

    def wants_line(self, request: web.BaseRequest, status: int) -> bool:
        """Whether the request gets a line of its own; if not, it is tallied."""
        if self.mode == "all" or status >= 400 or not isinstance(request, web.Request):
            return True
        resource = request.match_info.route.resource
        kind = PLAYBACK_ROUTES.get(resource.canonical) if resource is not None else None
        if kind is None:
            return True
        key = (kind, next(iter(request.match_info.values()), ""))
        self._count(key)
        return False

    def _count(self, key: tuple[str, str]) -> None:
        now = self._clock()
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = PlaybackTally(now)
        tally.requests += 1
        if now - tally.since >= self._interval:
            self._logger.info(
                "playback of %s %s: %d requests answered in the last %.0f s",
                key[0],
                key[1],
                tally.requests,
                now - tally.since,
            )
            del self._tallies[key]
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop the tallies of streams nobody played for two intervals (bounds the dict)."""
        idle = [k for k, t in self._tallies.items() if now - t.since >= 2 * self._interval]
        for key in idle:
            del self._tallies[key]


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger (same format), with :func:`redact_tokens` on every field."""

    def _format_line(
        self, request: BaseRequest, response: StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [
            (key, redact_tokens(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]


class PolicyAccessLogger(RedactingAccessLogger):
    """The redacting access logger, asking the app's :class:`AccessLogPolicy` first."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        policy = request.app.get(ACCESS_LOG_POLICY) if isinstance(request, web.Request) else None
        if policy is None or policy.wants_line(request, response.status):
            super().log(request, response, time)


def runner_options() -> dict[str, Any]:
    """The :class:`aiohttp.web.AppRunner` arguments that put the policy in charge."""
    return {"access_log_class": PolicyAccessLogger}
