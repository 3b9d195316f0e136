"""A signed low-latency stream in hls.js (Chromium): it plays with a playback token, the token
riding along on every part, segment, map and blocking reload the playlist names, and a player
without one gets nothing."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import imageio_ffmpeg
from playwright.async_api import Page

from api.playback_tokens import issue_playback_token
from tests.browser.conftest import WAIT_MS
from tests.browser.test_low_latency_player import serve_page
from tests.e2e.conftest import LiveServer, fetch, push, wait_for_playlist

PLAYER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>signed player</title></head><body>
<video id="video" muted autoplay playsinline width="320" height="180"></video>
<script src="{hls_js}"></script>
<script>
const video = document.getElementById("video");
window.fatal = null;
const hls = new Hls({{ lowLatencyMode: true, manifestLoadingMaxRetry: 0 }});
hls.on(Hls.Events.ERROR, (_, data) => {{ if (data.fatal) window.fatal = data.details; }});
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
hls.loadSource({playlist!r});
hls.attachMedia(video);
</script></body></html>
"""


async def test_hls_js_plays_a_signed_stream_with_a_token_only(
    page: Page, console_server: LiveServer, camera: Path
) -> None:
    server = console_server
    stream = await server.create_stream(latencyMode="low", playbackPolicy="signed")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.http_url}/v1/signing-keys", headers=server.headers) as response,
    ):
        key = await response.json()
    token = issue_playback_token(stream["id"], key["id"], key["privateKey"], 600)
    signed_url = f"{stream['downstreamUrl']}?token={token}"
    hls_js = f"{server.http_url}/console/vendor/hls.min.js"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    publisher = await push(ffmpeg, camera, stream["upstreamUrl"], loop=True)
    try:
        text = await wait_for_playlist(signed_url, lambda t: "#EXT-X-PART:" in t)
        assert "-part-" in text and f"?token={token}" in text
        assert (await fetch(stream["downstreamUrl"]))[0] == 403

        async for page_url in serve_page(PLAYER_PAGE.format(hls_js=hls_js, playlist=signed_url)):
            await page.goto(page_url)
            await page.wait_for_function(
                "window.fatal !== null || document.getElementById('video').currentTime > 2",
                timeout=WAIT_MS,
            )
            assert await page.evaluate("window.fatal") is None

        unsigned = PLAYER_PAGE.format(hls_js=hls_js, playlist=stream["downstreamUrl"])
        async for page_url in serve_page(unsigned):
            await page.goto(page_url)
            await page.wait_for_function("window.fatal !== null", timeout=WAIT_MS)
            assert await page.evaluate("window.fatal") == "manifestLoadError"
            assert await page.evaluate("document.getElementById('video').currentTime") == 0
    finally:
        publisher.kill()
        await publisher.process.wait()
