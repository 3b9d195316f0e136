"""The HTTP access log, with playback tokens left out: a signed stream's viewers carry their
token in the query (``?token=…``), and a log line must never hold one."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

_TOKEN = re.compile(r"(?<=[?&]token=)[^&\s\"]*")


def redact_tokens(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced by ``***``."""
    return _TOKEN.sub("***", text)


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger (same format), with :func:`redact_tokens` on every field."""

    def _format_line(
        self, request: BaseRequest, response: StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [
            (key, redact_tokens(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]
