"""The glass-to-glass page and publisher of :mod:`bench.llhls`: ffmpeg drawing its frame number
as bars, and a page playing the stream in hls.js that reads each presented frame's number back,
samples hls.js's own latency, and notes how the player started (its playlist loads, the media
it loaded, its seek, and when it began to play)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bench.common import ffmpeg_exe

FPS = 30
BITS = 16
BAR = 20
"""Width in pixels of one bit's bar (the frame is BITS * BAR wide)."""

PAGE = """<!doctype html><html><body style="margin:0">
<video id="v" muted autoplay playsinline></video>
<script src="{hls_js}"></script>
<script>
const video = document.getElementById("v");
const canvas = document.createElement("canvas");
canvas.width = {width}; canvas.height = 16;
const ctx = canvas.getContext("2d", {{ willReadFrequently: true }});
window.samples = []; window.fatal = null;
const hls = new Hls({{ lowLatencyMode: {low} }});
hls.on(Hls.Events.ERROR, (_, d) => {{ if (d.fatal) window.fatal = d.details; }});
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
window.timeline = []; let started = false;
const mark = (...event) => {{ if (!started) window.timeline.push([Date.now(), ...event]); }};
hls.on(Hls.Events.LEVEL_LOADED, (_, d) => mark("playlist", d.details.edge, hls.liveSyncPosition));
hls.on(Hls.Events.FRAG_LOADED, (_, d) => mark("loaded", d.frag.sn, d.part ? d.part.index : -1,
  d.part ? d.part.start : d.frag.start, d.part ? d.part.independent : true));
video.addEventListener("seeking", () => mark("seeking", video.currentTime));
video.addEventListener("playing", () => {{
  mark("playing", video.currentTime, hls.latency, hls.liveSyncPosition); started = true;
}});
function onFrame() {{
  const shown = Date.now();
  ctx.drawImage(video, 0, 0, {width}, 16);
  const row = ctx.getImageData(0, 8, {width}, 1).data;
  let n = 0;
  for (let i = 0; i < {bits}; i++) if (row[(i * {bar} + {bar} / 2) * 4] > 128) n += 2 ** i;
  window.samples.push([shown, n]);
  video.requestVideoFrameCallback(onFrame);
}}
video.requestVideoFrameCallback(onFrame);
window.player = [];
setInterval(() => {{
  const b = video.buffered;
  window.player.push([Date.now(), hls.latency, hls.targetLatency,
    b.length ? b.end(b.length - 1) - video.currentTime : 0]);
}}, 250);
hls.loadSource({url!r}); hls.attachMedia(video);
</script></body></html>"""


def counter_argv(url: str, gop: float = 2.0) -> list[str]:
    """ffmpeg generating 30 fps video live with its frame number as bars, pushed over RTMP,
    with a keyframe every ``gop`` seconds."""
    width = BITS * BAR
    keyint = max(1, round(gop * FPS))
    lum = f"if(bitand(floor(N/pow(2\\,floor(X/{BAR})))\\,1)\\,235\\,16)"
    # the realtime filter paces frames by the wall clock from the first one; -re does not do
    # that exactly for a lavfi input (it ran about 0.5 s ahead)
    source = (
        f"color=c=black:s={width}x180:r={FPS},format=yuv420p,geq=lum='{lum}':cb=128:cr=128,realtime"
    )
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "lavfi", "-i", source,
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(keyint), "-keyint_min", str(keyint), "-sc_threshold", "0",
        "-pix_fmt", "yuv420p", "-b:v", "600k", "-f", "flv", url,
    ]  # fmt: skip


async def page_server(html: str) -> tuple[web.AppRunner, str]:
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


def start_up(timeline: list[list[Any]]) -> dict[str, Any]:
    """How a player started, from its page's timeline (browser clock, ms): the loads and the
    time from its first playlist to playing, and hls.js's ``latency`` when it began to play."""
    first = next((e[0] for e in timeline if e[1] == "playlist"), None)
    playing = next((e for e in timeline if e[1] == "playing"), None)
    if first is None or playing is None:
        return {"start_loads": None, "start_s": None, "start_latency_s": None}
    return {
        "start_loads": sum(1 for e in timeline if e[1] == "loaded"),
        "start_s": (playing[0] - first) / 1000,
        "start_latency_s": playing[3],
    }
