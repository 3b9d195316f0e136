"""``kill -9`` of the whole service during a recorded session: the recording survives.

``liverelay serve`` runs as a subprocess configured by ``LIVERELAY_*`` variables. It is killed
with SIGKILL while a publisher pushes; on the next start the recording left open must be closed,
``ready`` and playable from the first to the last segment it had listed. The killed node's
stream lease must expire first: the restarted node (a new node id) closes the recording once it
can claim the stream, at most one lease lifetime after it started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Publisher,
    Sources,
    ended,
    fetch,
    push,
    wait_for_playlist,
)
from tests.e2e.outputs import decode_playlist
from tests.e2e.serve_process import Service, call, reap_orphans
from tests.e2e.serve_process import service as service
from tests.polling import eventually
from workers.m3u8 import parse_media_playlist

pytestmark = pytest.mark.e2e


async def test_kill_9_mid_session_then_restart_keeps_a_playable_recording(
    service: Service,
    tmp_path: Path,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    service.env["LIVERELAY_LEASE_SECONDS"] = "2"
    token = json.loads(await service.command("apikey", "create", "--name", "crash"))["token"]
    await service.start()
    stream = await call(
        service,
        token,
        "POST",
        "/v1/livestreams",
        json={"latencyMode": "standard", "name": "c", "record": True},
    )
    upstream = f"rtmp://127.0.0.1:{service.rtmp_port}/live/{stream['streamKey']}"
    publisher = await push(ffmpeg_exe, sources.av, upstream, loop=True)
    publishers.append(publisher)
    recordings = f"/v1/livestreams/{stream['id']}/recordings"

    async def recorded_four_segments() -> tuple[list, list] | None:
        data = (await call(service, token, "GET", recordings))["data"]
        if not data:
            return None
        status, body, _ = await fetch(data[0]["recordingUrl"])
        listed = parse_media_playlist(body.decode()) if status == 200 else []
        return (data, listed) if len(listed) >= 4 else None

    data, listed = await eventually(
        recorded_four_segments, 30, interval=0.2, message="the recording never reached 4 segments"
    )
    assert data[0]["status"] == "recording"

    service.kill()  # SIGKILL: no cleanup at all
    await service.process.wait()  # type: ignore[union-attr]
    publisher.kill()
    await publisher.process.wait()
    await reap_orphans(tmp_path)
    at_kill = parse_media_playlist(
        (tmp_path / "data" / "recordings" / data[0]["id"] / "index.m3u8").read_text()
    )
    assert len(at_kill) >= len(listed)

    await service.start()

    async def closed() -> dict | None:
        [recording] = (await call(service, token, "GET", recordings))["data"]
        return recording if recording["status"] != "recording" else None

    recording = await eventually(closed, 15, interval=0.2, message="the recording stayed open")
    assert recording["id"] == data[0]["id"]
    assert recording["status"] == "ready" and recording["error"] is None, recording
    assert recording["endedAt"] and recording["bytes"] > 0, recording
    playlist = await wait_for_playlist(recording["recordingUrl"], ended, timeout=5)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    segments = parse_media_playlist(playlist)
    assert [s.name for s in segments] == [s.name for s in at_kill]
    decoded = await decode_playlist(recording["recordingUrl"], playlist)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
    total = sum(s.duration for s in segments)
    assert abs(recording["duration"] - total) < 0.01
    assert decoded.duration >= total - 1.0, (decoded, total)
    assert decoded.video_frames >= 30 * (total - 1.0)
