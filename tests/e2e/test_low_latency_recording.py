"""Recording a low-latency stream end to end: real ffmpeg over RTMP, the fMP4 segments of the
live output stored with their initialization segments on local disk and in object storage
(SeaweedFS), a ``VOD`` playlist with ``EXT-X-MAP`` at the recording's URL, decoded with PyAV
from what that URL serves; a reconnect gives one recording with a discontinuity; a ``kill -9``
leaves a recording the next start closes playable, its initialization segments kept."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import av
import pytest

from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    ended,
    fetch,
    push,
    serving,
    wait_for_playlist,
)
from tests.e2e.outputs import wait_for_api
from tests.e2e.serve_process import Service, call, reap_orphans
from tests.e2e.serve_process import service as service
from tests.polling import eventually
from tests.s3_support import S3Server, object_keys, storage_on
from workers.m3u8 import Segment, parse_media_playlist

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class DecodedRecording:
    video_codec: str | None
    audio_codec: str | None
    video_frames: int
    audio_frames: int
    runs: int


async def decode_recording(url: str, playlist: str) -> DecodedRecording:
    """Fetch, from the URLs the playlist at ``url`` names (redirects followed), every
    segment and the initialization segment of each run; decode each run (an init segment
    and the segments up to the next discontinuity) with PyAV."""
    runs: list[list[str]] = []  # each: the init segment's URI, then the segments' URIs
    init, new_run = "", False
    for line in playlist.splitlines():
        if line.startswith('#EXT-X-MAP:URI="'):
            init, new_run = line.split('"')[1], True
        elif line == "#EXT-X-DISCONTINUITY":
            new_run = True
        elif line and not line.startswith("#"):
            assert init, "a segment without EXT-X-MAP"
            if new_run or not runs:
                runs.append([init])
            runs[-1].append(line)
            new_run = False
    blobs = []
    for run in runs:
        data = bytearray()
        for uri in run:
            status, body, _ = await fetch(urljoin(url, uri))
            assert status == 200, f"{uri}: HTTP {status}"
            data += body
        blobs.append(bytes(data))
    decoded = [await asyncio.to_thread(_decode_mp4, blob) for blob in blobs]
    return DecodedRecording(
        decoded[0][0],
        decoded[0][1],
        sum(d[2] for d in decoded),
        sum(d[3] for d in decoded),
        len(runs),
    )


def _decode_mp4(data: bytes) -> tuple[str | None, str | None, int, int]:
    with av.open(io.BytesIO(data), format="mp4") as container:
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        counts = {"video": 0, "audio": 0}
        for packet in container.demux():
            if packet.stream.type in counts and packet.size:
                counts[packet.stream.type] += len(packet.decode())
    return (
        video.codec_context.name if video else None,
        audio.codec_context.name if audio else None,
        counts["video"],
        counts["audio"],
    )


def play_hls(url: str) -> int:
    """Video frames decoded by libavformat's HLS demuxer (PyAV) reading ``url``."""
    with av.open(url, format="hls", timeout=20) as container:
        return sum(
            len(packet.decode())
            for packet in container.demux(video=0)
            if packet.size and packet.stream.type == "video"
        )


def assert_fmp4_vod(playlist: str) -> list[Segment]:
    lines = playlist.splitlines()
    assert "#EXT-X-VERSION:7" in lines and "#EXT-X-PLAYLIST-TYPE:VOD" in lines, playlist
    assert lines[-1] == "#EXT-X-ENDLIST"
    first_map = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-MAP:"))
    first_uri = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert first_map < first_uri, "the first segment has its initialization segment"
    return parse_media_playlist(playlist)


async def ready_recording(live: LiveServer, stream: dict) -> dict:
    path = f"/v1/livestreams/{stream['id']}/recordings"
    body = await wait_for_api(
        live, path, lambda b: b["data"] and b["data"][0]["status"] != "recording"
    )
    [recording] = body["data"]
    assert recording["status"] == "ready" and recording["error"] is None, recording
    return recording


async def test_a_low_latency_stream_is_recorded_to_local_disk_and_plays_back(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(record=True, latencyMode="low")
    assert (stream["record"], stream["latencyMode"]) == (True, "low")
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(publisher)
    code, stderr = await publisher.finish()
    assert code == 0, stderr
    recording = await ready_recording(live_server, stream)
    for url in (recording["recordingUrl"], stream["recordingUrl"]):
        playlist = await wait_for_playlist(url, ended)
        segments = assert_fmp4_vod(playlist)
        assert [s.discontinuity for s in segments].count(True) == 0
        decoded = await decode_recording(url, playlist)
        assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac"), decoded
        assert decoded.video_frames >= 30 * 5 and decoded.audio_frames > 0, decoded
    # A player too: libavformat's HLS client, through the recording's URL.
    played = await asyncio.to_thread(play_hls, recording["recordingUrl"])
    assert played >= 30 * 5, played
    assert abs(recording["duration"] - sum(s.duration for s in segments)) < 0.01
    stored = live_server.settings.recordings_dir / recording["id"]
    files = {p.name for p in stored.iterdir()}
    assert files == {"index.m3u8", *(n for s in segments for n in s.files)}
    assert recording["bytes"] == sum((stored / n).stat().st_size for n in files - {"index.m3u8"})


async def test_a_reconnect_gives_one_low_latency_recording_with_a_discontinuity(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(record=True, latencyMode="low")
    first = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(first)
    recordings = f"/v1/livestreams/{stream['id']}/recordings"

    async def recorded_two() -> bool:
        body = await wait_for_api(live_server, recordings, lambda b: bool(b["data"]))
        status, text, _ = await fetch(body["data"][0]["recordingUrl"])
        return status == 200 and len(parse_media_playlist(text.decode())) >= 2

    await eventually(recorded_two, 30, interval=0.2, message="no recorded segment")
    first.kill()  # a network drop: no unpublish
    await first.process.wait()
    stream_path = f"/v1/livestreams/{stream['id']}"
    await wait_for_api(
        live_server,
        stream_path,
        lambda b: bool(b["currentSession"] and b["currentSession"]["reconnecting"]),
    )
    second = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(second)
    code, stderr = await second.finish()
    assert code == 0, stderr

    recording = await ready_recording(live_server, stream)
    playlist = await wait_for_playlist(recording["recordingUrl"], ended)
    segments = assert_fmp4_vod(playlist)
    assert [s.discontinuity for s in segments].count(True) == 1, playlist
    decoded = await decode_recording(recording["recordingUrl"], playlist)
    assert decoded.runs == 2 and decoded.video_codec == "h264", decoded
    assert decoded.video_frames >= 30 * 7, decoded


async def test_a_low_latency_recording_goes_to_object_storage_and_plays_back(
    tmp_path: Path,
    sqlite_url: str,
    seaweedfs: S3Server,
    ffmpeg_exe: str,
    sources: Sources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"e2e-{secrets.token_hex(4)}/"
    storage = storage_on(seaweedfs, prefix, monkeypatch)
    async with serving(tmp_path, sqlite_url, **storage) as live:
        stream = await live.create_stream(record=True, latencyMode="low")
        publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
        code, stderr = await publisher.finish()
        assert code == 0, stderr
        recording = await ready_recording(live, stream)
        for url in (recording["recordingUrl"], stream["recordingUrl"]):
            playlist = await wait_for_playlist(url, ended)
            segments = assert_fmp4_vod(playlist)
            decoded = await decode_recording(url, playlist)  # segments: presigned redirects
            assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac"), decoded
            assert decoded.video_frames >= 30 * 5, decoded
        played = await asyncio.to_thread(play_hls, recording["recordingUrl"])
        assert played >= 30 * 5, played
        keys = object_keys(seaweedfs, f"{prefix}{recording['id']}/")
        names = {key.rsplit("/", 1)[-1] for key in keys}
        assert names == {"index.m3u8", *(n for s in segments for n in s.files)}
        assert not (tmp_path / "recordings" / recording["id"]).exists()


async def test_kill_9_keeps_a_playable_low_latency_recording_with_its_init_segment(
    service: Service,
    tmp_path: Path,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    service.env["LIVERELAY_LEASE_SECONDS"] = "2"
    token = json.loads(await service.command("apikey", "create", "--name", "crash"))["token"]
    await service.start()
    body = {"name": "c", "record": True, "latencyMode": "low"}
    stream = await call(service, token, "POST", "/v1/livestreams", json=body)
    upstream = f"rtmp://127.0.0.1:{service.rtmp_port}/live/{stream['streamKey']}"
    publisher = await push(ffmpeg_exe, sources.av, upstream, loop=True)
    publishers.append(publisher)
    recordings = f"/v1/livestreams/{stream['id']}/recordings"

    async def recorded_three() -> list | None:
        data = (await call(service, token, "GET", recordings))["data"]
        if not data:
            return None
        status, text, _ = await fetch(data[0]["recordingUrl"])
        listed = parse_media_playlist(text.decode()) if status == 200 else []
        return data if len(listed) >= 3 else None

    data = await eventually(recorded_three, 30, interval=0.2, message="never 3 segments")
    service.kill()  # SIGKILL: no cleanup at all
    await service.process.wait()  # type: ignore[union-attr]
    publisher.kill()
    await publisher.process.wait()
    await reap_orphans(tmp_path)
    directory = tmp_path / "data" / "recordings" / data[0]["id"]
    at_kill = parse_media_playlist((directory / "index.m3u8").read_text())
    inits = {s.init for s in at_kill}
    assert len(at_kill) >= 3 and all(inits)

    await service.start()

    async def closed() -> dict | None:
        [recording] = (await call(service, token, "GET", recordings))["data"]
        return recording if recording["status"] != "recording" else None

    recording = await eventually(closed, 15, interval=0.2, message="the recording stayed open")
    assert recording["status"] == "ready" and recording["error"] is None, recording
    assert all((directory / str(init)).is_file() for init in inits), "init segments kept"
    playlist = await wait_for_playlist(recording["recordingUrl"], ended, timeout=5)
    segments = assert_fmp4_vod(playlist)
    assert [s.name for s in segments] == [s.name for s in at_kill]
    decoded = await decode_recording(recording["recordingUrl"], playlist)
    assert decoded.video_codec == "h264" and decoded.video_frames >= 30 * 2, decoded
