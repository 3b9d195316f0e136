"""Thumbnails end to end: ffmpeg publishes the ``testsrc2`` pattern over RTMP, in standard and in
low-latency mode, recorded; the live thumbnail while it plays and the recording's thumbnail at
a time afterwards show the pattern at the asked size (decoded with PyAV)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import LiveServer, Publisher, Sources, fetch, push
from tests.polling import eventually
from tests.thumbnail_support import assert_pattern

pytestmark = pytest.mark.e2e


async def first_thumbnail(url: str) -> bytes:
    """The first thumbnail ``url`` answers with 200 (404 ``not_live`` until the publisher is
    in, 503 until the first segment is out)."""

    async def answered() -> bytes | None:
        status, body, _ = await fetch(url)
        assert status == 200 or status == 503 or b'"not_live"' in body, body
        return body if status == 200 else None

    return await eventually(answered, within=30, interval=0.2, message=f"no thumbnail at {url}")


async def ready_recording(live: LiveServer, stream_id: str) -> dict[str, Any]:
    url = f"{live.http_url}/v1/livestreams/{stream_id}/recordings"

    async def ready() -> dict[str, Any] | None:
        async with aiohttp.ClientSession() as http, http.get(url, headers=live.headers) as r:
            recordings = (await r.json())["data"]
        return recordings[0] if recordings and recordings[0]["status"] == "ready" else None

    return await eventually(ready, within=30, interval=0.2, message="recording not ready")


@pytest.mark.parametrize("mode", ["standard", "low"])
async def test_live_and_recording_thumbnails_show_the_test_pattern(
    live_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    mode: str,
) -> None:
    stream = await live_server.create_stream(record=True, latencyMode=mode)
    base = f"{live_server.http_url}/live/{stream['id']}"
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(publisher)

    image = await first_thumbnail(f"{base}/thumbnail.jpg?width=320")
    assert_pattern(image, (320, 180))
    status, image, headers = await fetch(f"{base}/thumbnail.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert_pattern(image, (640, 360), codec="png")

    code, stderr = await publisher.finish()
    assert code == 0, stderr
    recording = await ready_recording(live_server, stream["id"])
    url = f"{live_server.http_url}/recordings/{recording['id']}/thumbnail.jpg"
    status, image, headers = await fetch(f"{url}?time=4.5&height=90")
    assert status == 200, image
    assert headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert_pattern(image, (160, 90))
    status, body, _ = await fetch(f"{url}?time=60")
    assert status == 400 and b"time_out_of_range" in body
