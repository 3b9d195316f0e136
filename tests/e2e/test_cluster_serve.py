"""Two ``liverelay serve`` processes on one PostgreSQL database and one SeaweedFS bucket, with
real ffmpeg publishers over loopback RTMP (``tests/e2e/cluster_serve.py``).

- A stream published to node A plays from node B (forwarded to A).
- ``kill -9`` of the owner: an encoder the load balancer now sends to B gets the stream live
  there once A's lease has run out, in the same session and recording; playback from B works,
  and the recording ends ``ready`` with what both recorded, and decodes.
- A killed former owner that starts again leaves the stream live on B alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster_serve import LEASE_SECONDS, Cluster, ClusterNode
from tests.e2e.cluster_serve import cluster as cluster
from tests.e2e.conftest import (
    Publisher,
    Sources,
    download_and_decode,
    ended,
    fetch,
    push,
    segment_count,
    wait_for_playlist,
)
from tests.e2e.outputs import decode_playlist
from tests.polling import eventually
from workers.m3u8 import parse_media_playlist

pytestmark = pytest.mark.e2e

TAKEOVER_SECONDS = LEASE_SECONDS + 15
"""Bound of a takeover: the killed owner's lease runs out, then the encoder's next publish is
admitted (each refused attempt waits up to 2 s for a hand-over first) and B cuts a segment."""


async def play(ffmpeg: str, url: str, seconds: float = 3.0) -> str:
    """Read ``seconds`` of the live HLS stream at ``url`` as a player would (ffmpeg's HLS
    demuxer, decoding everything); its error output."""
    process = await asyncio.create_subprocess_exec(
        *(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", url),
        *("-t", str(seconds), "-f", "null", "-"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")
    return stderr.decode(errors="replace")


async def serves_segments(node: ClusterNode, stream_id: str, count: int = 1) -> str | None:
    """``node``'s live playlist of the stream when it answers 200 with ``count`` segments."""
    status, body, _ = await fetch(node.playlist(stream_id))
    text = body.decode(errors="replace")
    return text if status == 200 and segment_count(text) >= count else None


async def publish_until_live(
    ffmpeg: str, source: Path, node: ClusterNode, stream: dict[str, Any], started: list[Publisher]
) -> Publisher:
    """An encoder the load balancer sends to ``node``: it publishes again whenever it is turned
    away (the killed owner's lease still runs), until ``node`` serves a segment of the stream.
    Every ffmpeg started goes into ``started``; the admitted one is returned."""
    current: list[Publisher] = []

    async def admitted() -> bool:
        if not current or current[-1].process.returncode is not None:
            current.append(await push(ffmpeg, source, node.upstream(stream), loop=True))
            started.append(current[-1])
        return await serves_segments(node, stream["id"]) is not None

    def attempts() -> str:
        return f"{len(current)} publishes; node log:\n{node.log.read_text()[-3000:]}"

    await eventually(admitted, TAKEOVER_SECONDS, interval=0.1, message=attempts)
    return current[-1]


async def live_on_a_then_b(
    cluster: Cluster, ffmpeg: str, sources: Sources, publishers: list[Publisher]
) -> tuple[dict[str, Any], Publisher, list[str]]:
    """A recorded stream live on A (its recording has a segment in the bucket); A is killed
    with SIGKILL and the encoder, sent to B, gets the stream live there. The stream, B's
    publisher, and the segments A's recording had in the bucket just before the kill."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    stream = await cluster.create_stream(a, record=True, latencyMode="standard")
    first = await push(ffmpeg, sources.av, a.upstream(stream), loop=True)
    publishers.append(first)
    await eventually(lambda: serves_segments(a, stream["id"], 2), 30, interval=0.2)
    recordings = f"/v1/livestreams/{stream['id']}/recordings"

    async def recorded_on_a() -> list[str] | None:
        data = (await cluster.api(a, "GET", recordings))["data"]
        if not data:
            return None
        status, body, _ = await fetch(data[0]["recordingUrl"])
        return segment_names(body.decode()) if status == 200 else None

    recorded = await eventually(recorded_on_a, 30, interval=0.2, message="A recorded nothing")

    await a.kill_9()
    first.kill()  # its server is gone: the load balancer sends the encoder to B
    await first.process.wait()
    publisher = await publish_until_live(ffmpeg, sources.av, b, stream, publishers)
    return stream, publisher, recorded


async def test_a_stream_published_to_one_node_plays_from_the_other(
    cluster: Cluster, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    stream = await cluster.create_stream(a, latencyMode="standard")
    sid = stream["id"]
    publishers.append(await push(ffmpeg_exe, sources.av, a.upstream(stream), loop=True))
    await eventually(lambda: serves_segments(a, sid, 2), 30, interval=0.2)

    on_a = await cluster.api(a, "GET", f"/v1/livestreams/{sid}")
    on_b = await cluster.api(b, "GET", f"/v1/livestreams/{sid}")
    assert on_a["status"] == on_b["status"] == "live", on_b
    assert on_b["currentSession"] is not None
    assert on_b["currentSession"]["id"] == on_a["currentSession"]["id"]

    playlist = await wait_for_playlist(b.playlist(sid), lambda t: segment_count(t) >= 2)
    decoded = await download_and_decode(b.playlist(sid), playlist)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac"), decoded
    assert decoded.video_frames > 0 and decoded.audio_frames > 0, decoded
    await play(ffmpeg_exe, b.playlist(sid))
    assert a.has_live_files(sid) and not b.has_live_files(sid)  # B passed A's files on


async def test_kill_9_of_the_owner_moves_the_stream_to_the_other_node(
    cluster: Cluster, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    stream, publisher, _ = await live_on_a_then_b(cluster, ffmpeg_exe, sources, publishers)
    sid = stream["id"]

    on_b = await cluster.api(b, "GET", f"/v1/livestreams/{sid}")
    assert on_b["status"] == "live" and on_b["currentSession"] is not None, on_b
    playlist = await wait_for_playlist(b.playlist(sid), lambda t: segment_count(t) >= 2)
    decoded = await download_and_decode(b.playlist(sid), playlist)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac"), decoded

    publisher.kill()  # the encoder stops, and the session is completed (no reconnect wait)
    await publisher.process.wait()
    await cluster.api(b, "POST", f"/v1/livestreams/{sid}/complete")

    # B continued A's recording and closed it; A starting again finds nothing left open.
    await cluster.restart(a)
    recordings = await all_recordings_closed(cluster, b, sid)
    assert len(recordings) == 1, recordings
    for recording in recordings:
        assert recording["status"] == "ready" and recording["error"] is None, recording
        url = recording["recordingUrl"]
        playlist = await wait_for_playlist(url, ended, timeout=10)
        decoded = await decode_playlist(url, playlist)
        assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac"), decoded
        assert decoded.duration >= 1.0, (recording, decoded)


async def all_recordings_closed(cluster: Cluster, node: ClusterNode, sid: str) -> list[dict]:
    """The stream's recordings (asked of ``node``), once none is ``recording`` any more."""
    last: list[dict] = []

    async def closed() -> list[dict] | None:
        nonlocal last
        last = (await cluster.api(node, "GET", f"/v1/livestreams/{sid}/recordings"))["data"]
        return last if last and all(r["status"] != "recording" for r in last) else None

    return await eventually(
        closed, LEASE_SECONDS * 3 + 30, interval=0.3, message=lambda: f"still open: {last}"
    )


async def test_the_killed_owner_starting_again_leaves_the_stream_on_the_other_node(
    cluster: Cluster, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    stream, _, _ = await live_on_a_then_b(cluster, ffmpeg_exe, sources, publishers)
    sid = stream["id"]
    session = (await cluster.api(b, "GET", f"/v1/livestreams/{sid}"))["currentSession"]["id"]
    recordings = f"/v1/livestreams/{sid}/recordings"
    recording = newest((await cluster.api(b, "GET", recordings))["data"])
    assert recording["status"] == "recording", recording

    logged = len(a.log.read_bytes())
    await cluster.restart(a)
    before = set(segment_names(await serves_segments(b, sid)))
    # A's start-up recovery finds the stream's lease live on B and leaves the stream to it,
    # at start and again at each retry (one each lease lifetime): wait for two such passes.
    left_to_b = f"stream {sid} is live on node b: left to it".encode()
    await eventually(
        lambda: a.log.read_bytes()[logged:].count(left_to_b) >= 2,
        LEASE_SECONDS * 2 + 10,
        interval=0.2,
        message=lambda: a.log.read_bytes()[logged:].decode(errors="replace")[-3000:],
    )

    after = await cluster.api(b, "GET", f"/v1/livestreams/{sid}")
    assert after["status"] == "live" and after["currentSession"]["id"] == session, after
    via_a = await cluster.api(a, "GET", f"/v1/livestreams/{sid}")  # forwarded to B
    assert (via_a["currentSession"] or {}).get("id") == session, via_a
    sessions = (await cluster.api(b, "GET", f"/v1/livestreams/{sid}/sessions"))["data"]
    assert [s["endedAt"] for s in sessions if s["id"] == session] == [None], sessions
    listed = (await cluster.api(b, "GET", recordings))["data"]
    mine = [r for r in listed if r["id"] == recording["id"]]
    assert [r["status"] for r in mine] == ["recording"], mine
    # playback from B goes on: a segment cut after A started again, and it decodes
    playlist = await wait_for_playlist(
        b.playlist(sid), lambda t: not set(segment_names(t)) <= before, timeout=15
    )
    decoded = await download_and_decode(b.playlist(sid), playlist)
    assert decoded.video_frames > 0, decoded


async def test_a_takeover_continues_the_same_session_and_recording(
    cluster: Cluster, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    b = cluster.nodes["b"]
    stream, publisher, on_a = await live_on_a_then_b(cluster, ffmpeg_exe, sources, publishers)
    sid = stream["id"]
    await eventually(lambda: serves_segments(b, sid, 2), 15, interval=0.2)
    publisher.kill()
    await publisher.process.wait()
    await cluster.api(b, "POST", f"/v1/livestreams/{sid}/complete")
    await eventually(
        lambda: idle(cluster, b, sid), 15, interval=0.2, message="the session did not end"
    )

    sessions = (await cluster.api(b, "GET", f"/v1/livestreams/{sid}/sessions"))["data"]
    assert len(sessions) == 1, sessions
    recordings = (await cluster.api(b, "GET", f"/v1/livestreams/{sid}/recordings"))["data"]
    assert len(recordings) == 1, recordings
    [recording] = await all_recordings_closed(cluster, b, sid)
    assert recording["status"] == "ready" and recording["error"] is None, recording
    playlist = await wait_for_playlist(recording["recordingUrl"], ended, timeout=10)
    # one recording holds what A recorded before the kill and what B recorded after it
    names = segment_names(playlist)
    assert set(on_a) <= set(names) and len(names) > len(on_a), (on_a, names)
    decoded = await decode_playlist(recording["recordingUrl"], playlist)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac"), decoded


async def idle(cluster: Cluster, node: ClusterNode, sid: str) -> bool:
    return (await cluster.api(node, "GET", f"/v1/livestreams/{sid}"))["status"] == "idle"


def newest(data: list[dict]) -> dict:
    return max(data, key=lambda r: r["startedAt"])


def segment_names(playlist: str | None) -> list[str]:
    return [segment.name for segment in parse_media_playlist(playlist or "")]


async def test_a_restarted_node_does_not_serve_the_live_window_of_its_killed_process(
    cluster: Cluster, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    stream = await cluster.create_stream(a, latencyMode="standard")
    sid = stream["id"]
    publisher = await push(ffmpeg_exe, sources.av, a.upstream(stream), loop=True)
    publishers.append(publisher)
    await eventually(lambda: serves_segments(a, sid, 2), 30, interval=0.2)
    await a.kill_9()
    publisher.kill()
    await publisher.process.wait()

    await cluster.restart(a)  # its start-up closes the session the killed process left open
    session = f"/v1/livestreams/{sid}/sessions"

    async def closed() -> bool:
        sessions = (await cluster.api(a, "GET", session))["data"]
        return all(s["endedAt"] is not None for s in sessions)

    await eventually(closed, LEASE_SECONDS * 3 + 10, interval=0.2, message="session left open")
    assert (await cluster.api(a, "GET", f"/v1/livestreams/{sid}"))["status"] == "idle"
    # The stream is live nowhere: no node has a live window of it to serve.
    for node in (b, a):
        status, body, _ = await fetch(node.playlist(sid))
        assert status == 404, (node.node_id, status, body[:300])
