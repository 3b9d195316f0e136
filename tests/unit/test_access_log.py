"""The access log never holds a playback token."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_log import AccessLogger

from api.access_log import PolicyAccessLogger, RedactingAccessLogger, redact_tokens

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def test_token_values_are_redacted_and_nothing_else() -> None:
    assert redact_tokens(f"GET /live/a/index.m3u8?token={TOKEN} HTTP/1.1") == (
        "GET /live/a/index.m3u8?token=*** HTTP/1.1"
    )
    assert redact_tokens(f"/p?_HLS_msn=4&token={TOKEN}&_HLS_part=1") == (
        "/p?_HLS_msn=4&token=***&_HLS_part=1"
    )
    assert redact_tokens("/p?notatoken=1&mytoken=2") == "/p?notatoken=1&mytoken=2"


@pytest.mark.parametrize("logger_class", [RedactingAccessLogger, PolicyAccessLogger])
def test_the_access_log_line_has_no_token(
    caplog: pytest.LogCaptureFixture, logger_class: type[AccessLogger]
) -> None:
    """Also the logger ``liverelay serve`` runs with (which asks the app's policy first)."""
    request = make_mocked_request("GET", f"/live/a/seg.ts?_HLS_msn=1&token={TOKEN}")
    logger = logger_class(logging.getLogger("test.access"), AccessLogger.LOG_FORMAT)
    with caplog.at_level(logging.INFO, logger="test.access"):
        logger.log(request, web.Response(status=200), 0.01)
    assert "GET /live/a/seg.ts?_HLS_msn=1&token=*** HTTP/1.1" in caplog.text
    assert TOKEN not in caplog.text
