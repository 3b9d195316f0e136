"""Recording and restreaming with real ffmpeg: every output isolated, supervised and visible.

Targets used: a real RTMP receiver (ffmpeg ``-listen 1`` writing an FLV file), a closed port and
a stalled ingest (accepts TCP, never reads). The bad targets must never disturb the live HLS,
the recording or the good target.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from api.keys import PATHS
from config.logs import quiet_chatty_loggers
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    ended,
    free_port,
    has_segment,
    push,
    serving,
    wait_for_playlist,
)
from tests.e2e.outputs import (
    Receiver,
    api,
    decode_flv,
    decode_playlist,
    stalled_ingest,
    start_receiver,
    target,
    target_states,
    wait_for_api,
)

pytestmark = pytest.mark.e2e

BACKOFF_MAX = 2.0
HUB_QUEUE_BYTES = 256 * 1024
CLOSED_KEY = "closed-secret-key-6d1f"
STALLED_KEY = "stalled-secret-key-93ab"


@pytest.fixture
async def relay_server(tmp_path: Path, sqlite_url: str) -> AsyncIterator[LiveServer]:
    """The service with loopback targets allowed, a short backoff cap and small hub queues."""
    async with serving(
        tmp_path,
        sqlite_url,
        allow_private_targets=True,
        output_backoff_max_seconds=BACKOFF_MAX,
        output_stall_seconds=4.0,
        hub_queue_bytes=HUB_QUEUE_BYTES,
    ) as live:
        yield live


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        if receiver.process.returncode is None:
            receiver.kill()
            await receiver.process.wait()


async def stop_publisher(publisher: Publisher) -> None:
    """SIGTERM: ffmpeg ends its output cleanly (the publish ends with an unpublish)."""
    publisher.process.terminate()
    await asyncio.wait_for(publisher.process.wait(), 20)


async def test_recorded_push_with_good_closed_and_stalled_targets(
    relay_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    receivers: list[Receiver],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    quiet_chatty_loggers()  # as configure_logging does for the service
    live = relay_server
    good = await start_receiver(ffmpeg_exe, free_port(), tmp_path / "good.flv")
    receivers.append(good)
    async with stalled_ingest() as stalled:
        stream = await live.create_stream(
            latencyMode="standard",
            record=True,
            restream=[
                target(good.port, "key"),
                target(free_port(), CLOSED_KEY),
                target(stalled.port, STALLED_KEY),
            ],
        )
        path = f"/v1/livestreams/{stream['id']}"
        publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
        publishers.append(publisher)
        await wait_for_playlist(stream["downstreamUrl"], has_segment)
        live_since = time.monotonic()

        def bad_targets_retrying(body: dict) -> bool:
            states = target_states(body)
            return states["key"] == "live" and {states[CLOSED_KEY], states[STALLED_KEY]} == {
                "retrying"
            }

        seen = await wait_for_api(live, path, bad_targets_retrying, timeout=30)
        live_path = live.app[PATHS].get(stream["id"])
        assert live_path is not None
        outputs = live_path.outputs
        while time.monotonic() - live_since < 8:  # memory stays bounded while targets misbehave
            assert all(s.queued_bytes <= HUB_QUEUE_BYTES for s in live_path.hub.subscriptions)
            await asyncio.sleep(0.2)
        playing = await wait_for_playlist(stream["downstreamUrl"], has_segment)
        recordings = await api(live, "GET", f"{path}/recordings")
        async with (
            aiohttp.ClientSession() as http,
            http.delete(
                f"{live.http_url}{path}/recordings/{recordings['data'][0]['id']}",
                headers=live.headers,
            ) as refused,
        ):
            assert refused.status == 409  # not while it records
        await stop_publisher(publisher)
        pushed_for = time.monotonic() - live_since

    # The live HLS kept real time while the bad targets failed over and over.
    hls = outputs.hls.supervisor.status()
    assert hls.restarts == 0, hls
    assert "#EXT-X-DISCONTINUITY" not in playing
    final = await wait_for_playlist(stream["downstreamUrl"], ended, timeout=30)
    decoded = await decode_playlist(stream["downstreamUrl"], final)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
    assert decoded.duration >= pushed_for - 2, (decoded, pushed_for)

    # The bad targets were visible with a safe error; no key ever reached the logs.
    for key in (CLOSED_KEY, STALLED_KEY):
        bad = next(t for t in seen["restream"] if t["streamKey"] == key)
        assert bad["retries"] >= 1 and bad["lastError"] and bad["since"], bad
        assert key not in bad["lastError"]
        assert key not in caplog.text
    assert "Connection refused" in caplog.text or "refused" in str(seen)

    # The recording was growing while live and is complete and ready now.
    assert recordings["data"][0]["status"] == "recording"
    [recording] = (await api(live, "GET", f"{path}/recordings"))["data"]
    assert recording["status"] == "ready" and recording["endedAt"], recording
    assert recording["bytes"] > 0 and recording["duration"] >= pushed_for - 2, recording
    for url in (recording["recordingUrl"], stream["recordingUrl"]):
        playlist = await wait_for_playlist(url, ended)
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
        copy = await decode_playlist(url, playlist)
        assert (copy.video_codec, copy.audio_codec) == ("h264", "aac")
        assert abs(copy.duration - decoded.duration) < 1.5, (copy, decoded)

    # The good target received a decodable copy of (nearly) the whole session.
    await good.finish()
    relayed = await asyncio.to_thread(decode_flv, good.path)
    assert (relayed.video_codec, relayed.audio_codec) == ("h264", "aac")
    assert relayed.duration >= pushed_for - 3, (relayed, pushed_for)
    assert relayed.video_frames >= 30 * (pushed_for - 3)

    # Not live any more: the targets are idle again.
    idle = await wait_for_api(live, path, lambda b: b["status"] == "idle")
    assert {t["status"] for t in idle["restream"]} == {"idle"}


async def test_targets_change_while_live_and_a_late_receiver_connects(
    relay_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    receivers: list[Receiver],
    tmp_path: Path,
) -> None:
    live = relay_server
    late_port, gone_port = free_port(), free_port()
    stream = await live.create_stream(
        latencyMode="standard", restream=[target(late_port, "late"), target(gone_port, "gone")]
    )
    path = f"/v1/livestreams/{stream['id']}"
    publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    await wait_for_playlist(stream["downstreamUrl"], has_segment)
    await wait_for_api(
        live, path, lambda b: set(target_states(b).values()) <= {"retrying", "connecting"}
    )
    live_path = live.app[PATHS].get(stream["id"])
    assert live_path is not None
    outputs = live_path.outputs
    late_output = outputs.restreams[stream["restream"][0]["_id"]]

    # A receiver that comes up late is connected within the backoff cap.
    receivers.append(await start_receiver(ffmpeg_exe, late_port, tmp_path / "late.flv"))
    came_up = time.monotonic()
    await wait_for_api(live, path, lambda b: target_states(b)["late"] == "live", timeout=30)
    connect_delay = time.monotonic() - came_up
    assert connect_delay <= BACKOFF_MAX + 5, connect_delay

    # Replace "gone" by a new receiver: "late" and the HLS output go on untouched.
    added = await start_receiver(ffmpeg_exe, free_port(), tmp_path / "added.flv")
    receivers.append(added)
    restarts_before = late_output.status().restarts
    body = {"restream": [target(late_port, "late"), target(added.port, "added")]}
    updated = await api(live, "PATCH", path, json=body)
    assert [t["streamKey"] for t in updated["restream"]] == ["late", "added"]
    assert updated["restream"][0]["_id"] == stream["restream"][0]["_id"]
    await wait_for_api(live, path, lambda b: target_states(b) == {"late": "live", "added": "live"})
    assert outputs.restreams[stream["restream"][0]["_id"]] is late_output
    assert late_output.status().restarts == restarts_before
    assert outputs.hls.supervisor.status().restarts == 0
    playlist = await wait_for_playlist(stream["downstreamUrl"], has_segment)
    assert "#EXT-X-DISCONTINUITY" not in playlist

    await stop_publisher(publishers[0])
    for receiver in receivers:
        await receiver.finish()
        relayed = await asyncio.to_thread(decode_flv, receiver.path)
        assert (relayed.video_codec, relayed.audio_codec) == ("h264", "aac")
        assert relayed.duration > 1.0, (receiver.path.name, relayed)
