"""Restream keys never reach the log or ``lastError``, whatever the shape of the target URL.

Real ffmpeg restream outputs fail against loopback ports where nothing listens, over and over
(each restart logs its command line, each failure ffmpeg's error with the whole URL), while the
log is captured at DEBUG for every logger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from config.logs import quiet_chatty_loggers
from tests.conftest import assert_hidden
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    e2e_settings,
    free_port,
    has_segment,
    push,
    start_live_server,
    wait_for_playlist,
)
from tests.e2e.outputs import wait_for_api

pytestmark = pytest.mark.e2e

TARGETS = (
    ("rtmp://127.0.0.1:{port}", "ONLYKEY-5d1e7a"),  # no application path
    ("rtmp://127.0.0.1:{port}", "a/b#c?d=%41e-ключ-3f9a"),
    ("rtmp://127.0.0.1:{port}/live2", "ke#y/x?y=1&z=%2F-ñé'q-8b2c"),
    ("rtmp://user:pw-9Qz7@127.0.0.1:{port}/app/inst", "日本-key%-4e1d"),
)
"""(url, streamKey) of each target: every port is closed, so every attempt fails."""


FFMPEG_CONTEXT = re.compile(r"\[([^\[\]@ ]+) @ 0x[0-9a-f]+\]")
"""The ``[rtmp @ 0x558e047d7d00]`` prefix of ffmpeg's messages: an address in its memory."""


def without_random_hex(text: str, stream: dict[str, Any]) -> str:
    """``text`` without the random hex it is full of: the ids of the stream and its targets
    (on every log line about them) and ffmpeg's addresses. The server's stream key is random
    hex too, so a 5-character piece of it is in one of them by chance now and then."""
    for known in (stream["id"], *(target["id"] for target in stream["restream"])):
        text = text.replace(known, "<id>")
    return FFMPEG_CONTEXT.sub(r"[\1 @ <address>]", text)


@pytest.fixture
async def relay_server(tmp_path: Path, sqlite_url: str) -> AsyncIterator[LiveServer]:
    """The service with loopback targets allowed and a short backoff cap."""
    port = free_port()
    settings = e2e_settings(
        tmp_path, sqlite_url, port, allow_private_targets=True, output_backoff_max_seconds=1.0
    )
    server, live = await start_live_server(settings, port)
    try:
        yield live
    finally:
        await server.close()


async def test_failing_targets_never_show_their_keys(
    relay_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    quiet_chatty_loggers()  # as configure_logging does for the service
    targets = [{"url": url.format(port=free_port()), "streamKey": key} for url, key in TARGETS]
    stream = await relay_server.create_stream(restream=targets)
    assert [t["streamKey"] for t in stream["restream"]] == [key for _, key in TARGETS]
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], has_segment)

    def every_target_failed_twice(body: dict[str, Any]) -> bool:
        return all(t["retries"] >= 2 and t["lastError"] for t in body["restream"])

    seen = await wait_for_api(
        relay_server, f"/v1/livestreams/{stream['id']}", every_target_failed_twice, timeout=60
    )
    publisher.kill()
    await publisher.process.wait()

    assert caplog.text.count("starting ") >= 2 * len(TARGETS)  # the command lines were logged
    for target in seen["restream"]:
        assert "refused" in target["lastError"], target  # still says what went wrong
        for _, key in TARGETS:
            assert_hidden(key, target["lastError"])
    for _, key in TARGETS:
        assert_hidden(key, caplog.text)
    assert_hidden(stream["streamKey"], without_random_hex(caplog.text, stream))
    assert "pw-9Qz7" not in caplog.text
