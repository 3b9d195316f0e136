"""A real publish reaches a real webhook receiver: ``livestream.started``, then, after a clean
stop, ``livestream.ended`` and ``recording.ready``, signed, with the session the API lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp.plugin import AiohttpServer

from tests.api.webhook_support import Receiver, docs_verifier
from tests.e2e.conftest import (
    Publisher,
    Sources,
    e2e_settings,
    free_port,
    push,
    start_live_server,
)

pytestmark = pytest.mark.e2e


async def api(method: str, url: str, token: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, headers={"Authorization": token}) as response,
    ):
        assert response.status < 300, await response.text()
        return await response.json()


async def test_a_publish_is_reported_to_a_webhook(
    tmp_path: Path,
    sqlite_url: str,
    aiohttp_server: AiohttpServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    receiver = Receiver()
    receiver.base = str((await aiohttp_server(receiver.app())).make_url("")).rstrip("/")
    port = free_port()
    settings = e2e_settings(tmp_path, sqlite_url, port, allow_private_targets=True)
    server, live = await start_live_server(settings, port)
    try:
        base, token = live.http_url, live.token
        hook = {"url": receiver.url("ok"), "events": ["livestream.*", "recording.*"]}
        webhook = await api("POST", f"{base}/v1/webhooks", token, hook)
        stream = await live.create_stream(record=True)

        publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
        publishers.append(publisher)
        started = await receiver.next(timeout=20)
        code, stderr = await publisher.finish()
        assert code == 0, stderr
        later = [await receiver.next(timeout=30) for _ in range(2)]
        sessions = await api("GET", f"{base}/v1/livestreams/{stream['id']}/sessions", token)
    finally:
        receiver.release.set()
        await server.close()

    verify = docs_verifier()
    events = [json.loads(r.body) for r in [started, *later]]
    for got in [started, *later]:
        assert verify(webhook["secret"], got.headers["Liverelay-Signature"], got.body)
    assert events[0]["type"] == "livestream.started"
    assert events[0]["data"]["status"] == "live" and events[0]["data"]["id"] == stream["id"]
    by_type = {e["type"]: e["data"] for e in events[1:]}
    assert set(by_type) == {"livestream.ended", "recording.ready"}
    ended = by_type["livestream.ended"]
    assert ended["status"] == "idle" and ended["session"]["endReason"] == "publisher_left"
    assert ended["session"]["bytesIn"] > 0
    [session] = sessions["data"]
    assert ended["session"]["id"] == events[0]["data"]["session"]["id"] == session["id"]
    assert by_type["recording.ready"]["recording"]["status"] == "ready"
    # The stream's events are numbered in the order they happened, the start first.
    assert [e["sequence"] for e in events][:1] == [1]
    assert sorted(e["sequence"] for e in events) == [1, 2, 3]
