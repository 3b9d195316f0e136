"""A three-rendition stream in a real player: hls.js in headless Chromium plays the
multivariant playlist, climbs to the source, switches down to the lowest rendition when
DevTools throttles the network (CDP ``Network.emulateNetworkConditions``), and back up when
the throttle is lifted. Standard mode (MPEG-TS), 1 s segments."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import imageio_ffmpeg
from playwright.async_api import Page

from tests.browser.conftest import WAIT_MS
from tests.browser.test_low_latency_player import serve_page
from tests.e2e.conftest import LiveServer, Publisher, wait_for_playlist

THROTTLED_BYTES_PER_SECOND = 90_000
"""720 kbit/s: below the 360p rendition (about 0.9 Mbit/s with audio), above 240p's."""
SWITCH_TIMEOUT_MS = WAIT_MS + 25_000

PLAYER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>abr player</title></head>
<body style="margin:0;background:#000">
<video id="video" muted autoplay playsinline width="854" height="480"></video>
<script src="{hls_js}"></script>
<script>
const video = document.getElementById("video");
window.heights = [];
window.fatal = null;
const hls = new Hls({{ abrEwmaDefaultEstimate: 5000000, testBandwidth: true }});
window.hls = hls;
hls.on(Hls.Events.ERROR, (_, data) => {{
  if (data.fatal) window.fatal = data.type + ": " + data.details;
}});
hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {{
  window.heights.push(hls.levels[data.level].height);
}});
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
hls.loadSource({playlist!r});
hls.attachMedia(video);
</script></body></html>
"""


async def publish_480p(url: str) -> Publisher:
    """A live 854x480 test pattern with a 1 s GOP at 1.5 Mbit/s, and a tone, over RTMP."""
    video = "testsrc2=size=854x480:rate=30,realtime"
    audio = "sine=frequency=440:sample_rate=48000,arealtime"
    argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "warning", "-nostdin"]
    argv += ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-b:v", "1500k"]
    argv += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    return Publisher(process, time.monotonic())


async def _switched_to(page: Page, height: int, after: int) -> int:
    """Wait until hls.js switched to the rendition of ``height`` after ``after`` switches;
    returns how many switches there were then."""
    await page.wait_for_function(
        f"window.fatal !== null || window.heights.slice({after}).includes({height})",
        timeout=SWITCH_TIMEOUT_MS,
    )
    assert await page.evaluate("window.fatal") is None
    return int(await page.evaluate("window.heights.length"))


async def test_hls_js_switches_down_when_throttled_and_back_up(
    page: Page, console_server: LiveServer, tmp_path: Path
) -> None:
    server = console_server
    stream = await server.create_stream(renditions=["source", "360p", "240p"])
    publisher = await publish_480p(stream["upstreamUrl"])
    try:
        base = stream["downstreamUrl"].rsplit("/", 1)[0]
        await wait_for_playlist(f"{base}/240p.m3u8", lambda t: t.count("#EXTINF") >= 2)
        await wait_for_playlist(stream["downstreamUrl"], lambda t: t.count("STREAM-INF") == 3)
        html = PLAYER_PAGE.format(
            hls_js=f"{server.http_url}/console/vendor/hls.min.js", playlist=stream["downstreamUrl"]
        )
        async for page_url in serve_page(html):
            await page.goto(page_url)
            # hls.js fetches the multivariant playlist after the page has loaded.
            await page.wait_for_function("window.fatal !== null || hls.levels.length > 0")
            assert await page.evaluate("window.fatal") is None
            assert await page.evaluate("hls.levels.map(l => l.height)") == [240, 360, 480]
            seen = await _switched_to(page, 480, 0)
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Network.enable")
            conditions = {"offline": False, "latency": 0, "uploadThroughput": -1}
            await cdp.send(
                "Network.emulateNetworkConditions",
                {**conditions, "downloadThroughput": THROTTLED_BYTES_PER_SECOND},
            )
            seen = await _switched_to(page, 240, seen)
            await cdp.send(
                "Network.emulateNetworkConditions", {**conditions, "downloadThroughput": -1}
            )
            await _switched_to(page, 480, seen)
            await page.screenshot(path=tmp_path / "abr-player.png")
    finally:
        publisher.kill()
        await publisher.process.wait()
