"""A ladder whose transcoding cannot keep up drops its top rung and goes on without it, in
both latency modes. The machine here keeps up with a 240p rung easily, so the test raises the
bar instead: every speed counts as too slow, after one second. A low-latency rung whose fMP4
cannot be read is dropped the same way (its box bound lowered below any real box)."""

from __future__ import annotations

import aiohttp
import pytest

from api.keys import METRICS
from tests.e2e.abr_support import fetch_ok, parse_multivariant
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    ended,
    fetch,
    push,
    wait_for_playlist,
)
from tests.polling import eventually
from workers import keep_up, llhls_ladder

pytestmark = pytest.mark.e2e


async def dropped(live_server: LiveServer, stream_id: str) -> dict | None:
    """The stream's current session once it has dropped a rendition, else None."""
    url = f"{live_server.http_url}/v1/livestreams/{stream_id}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=live_server.headers) as response,
    ):
        session = (await response.json())["currentSession"]
    return session if session and session["droppedRenditions"] else None


@pytest.mark.parametrize("mode", ["standard", "low"])
async def test_a_ladder_that_falls_behind_drops_its_top_rung(
    live_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    monkeypatch.setattr(keep_up, "SLOW_SPEED", 1000.0)
    monkeypatch.setattr(keep_up, "SLOW_SECONDS", 1.0)
    monkeypatch.setattr(keep_up, "GRACE_SECONDS", 1.0)
    stream = await live_server.create_stream(latencyMode=mode, renditions=["source", "240p"])
    publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    session = await eventually(lambda: dropped(live_server, stream["id"]), 30, interval=0.2)
    assert session["droppedRenditions"] == ["240p"]
    assert session["renditions"] == ["source"]
    base = stream["downstreamUrl"].rsplit("/", 1)[0]
    await wait_for_playlist(f"{base}/240p.m3u8", ended)
    variants = parse_multivariant((await fetch_ok(stream["downstreamUrl"])).decode())
    assert [v.uri for v in variants] == ["source.m3u8"]
    source = await wait_for_playlist(
        f"{base}/source.m3u8", lambda t: "#EXT-X-DISCONTINUITY" in t.split("DISCONTINUITY-")[-1]
    )
    assert "#EXT-X-ENDLIST" not in source, "the source goes on"
    metrics = live_server.app[METRICS].render().decode()
    assert f'liverelay_renditions_dropped_total{{stream="{stream["id"]}"}} 1.0' in metrics


async def test_a_low_latency_rung_whose_output_cannot_be_read_is_dropped(
    live_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A box bound no fMP4 fragment fits in: the rung's reader refuses its first fragment.
    monkeypatch.setattr(llhls_ladder, "MAX_RUNG_BOX_BYTES", 64)
    stream = await live_server.create_stream(latencyMode="low", renditions=["source", "240p"])
    publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    session = await eventually(lambda: dropped(live_server, stream["id"]), 30, interval=0.2)
    assert session["droppedRenditions"] == ["240p"]
    assert session["renditions"] == ["source"]
    base = stream["downstreamUrl"].rsplit("/", 1)[0]
    source = await wait_for_playlist(f"{base}/source.m3u8", lambda t: "#EXT-X-PART:" in t)
    assert "240p.m3u8" not in source, "no rendition report of the dropped rung"
    # It never had a part (its first box was refused): as any playlist before its first media,
    # 404, and never listed; a rung dropped later keeps its ended playlist (the test above).
    status, _, _ = await fetch(f"{base}/240p.m3u8")
    assert status == 404
    variants = parse_multivariant((await fetch_ok(stream["downstreamUrl"])).decode())
    assert [v.uri for v in variants] == ["source.m3u8"]
    assert "#EXT-X-ENDLIST" not in source, "the source goes on"
    metrics = live_server.app[METRICS].render().decode()
    assert f'liverelay_renditions_dropped_total{{stream="{stream["id"]}"}} 1.0' in metrics
