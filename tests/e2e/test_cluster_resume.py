"""A stream moving between nodes stays one session with one recording: two in-process nodes on
one PostgreSQL database, recordings in SeaweedFS, real ffmpeg publishers over loopback.

Node A stops renewing the stream's lease (as a node that died would) while its publisher is
gone; the publisher comes back on node B inside the stream's reconnect window. B continues A's
session and recording: one ``live_sessions`` row, one recording that is ``ready`` at the end,
whose playlist lists A's segments, then B's after a discontinuity, and decodes. A, told late
that it lost the stream, cannot overwrite what B wrote. Outside the window B begins a new
session and closes A's, with its recording, at once."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.keys import RECORDING_STORAGE
from api.models import LiveSession, Recording
from tests.cluster_support import ClusterNodes, Node, set_column_seconds_ago
from tests.cluster_support import cluster_nodes as cluster_nodes
from tests.e2e.conftest import SEGMENT_SECONDS, Publisher, Sources, decode_ts, push
from tests.polling import eventually
from tests.s3_support import S3Server, storage_on, sync_client
from workers.live_path import LivePath
from workers.m3u8 import PLAYLIST_NAME, Segment, parse_media_playlist

pytestmark = pytest.mark.e2e


class Bucket:
    """The recordings' objects, read straight from the S3 server."""

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.prefix = f"resume-{secrets.token_hex(4)}/"
        self._client = sync_client(server)

    def _get(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.server.bucket, Key=self.prefix + key)
        except self._client.exceptions.NoSuchKey:
            return None
        body: bytes = answer["Body"].read()
        return body

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    async def playlist(self, recording_id: str) -> str:
        body = await self.get(f"{recording_id}/{PLAYLIST_NAME}")
        return "" if body is None else body.decode()

    async def segments(self, recording_id: str) -> list[Segment]:
        return parse_media_playlist(await self.playlist(recording_id))


@pytest.fixture
async def nodes(
    cluster_nodes: ClusterNodes, seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch
) -> tuple[Node, Node, Bucket]:
    bucket = Bucket(seaweedfs)
    settings: dict[str, Any] = {
        **storage_on(seaweedfs, bucket.prefix, monkeypatch),
        "hls_segment_seconds": SEGMENT_SECONDS,
        "hls_list_size": 30,
    }
    a = await cluster_nodes.start("node-a", **settings)
    b = await cluster_nodes.start("node-b", **settings)
    return a, b, bucket


def url(node: Node, key: str) -> str:
    return f"rtmp://127.0.0.1:{node.rtmp_port}/live/{key}"


async def rows(node: Node, stream_id: str) -> tuple[list[LiveSession], list[Recording]]:
    async with node.sessionmaker() as session:
        sessions = await session.scalars(
            select(LiveSession).where(LiveSession.live_stream_id == stream_id)
        )
        recordings = await session.scalars(
            select(Recording).where(Recording.live_stream_id == stream_id)
        )
        return list(sessions.all()), list(recordings.all())


async def recording_of(path: LivePath) -> str:
    recording = path.outputs.recording
    assert recording is not None

    def begun() -> str | None:
        return recording.recording_id

    return await eventually(begun, 20, message="the recording never began")


async def live_on_a_then_gone(
    a: Node, bucket: Bucket, stream_id: str, key: str, ffmpeg: str, sources: Sources
) -> tuple[LivePath, str, list[Segment]]:
    """A records the stream until storage holds two segments, then its publisher drops (A
    waits in the reconnect window); returns A's path, the recording and what storage holds."""
    publisher = await push(ffmpeg, sources.av, url(a, key), loop=True)
    try:
        path = await eventually(lambda: a.paths.get(stream_id), 20)
        rid = await recording_of(path)

        async def two_stored() -> list[Segment] | None:
            listed = await bucket.segments(rid)
            return listed if len(listed) >= 2 else None

        await eventually(two_stored, 30, interval=0.2, message="A stored no two segments")
    finally:
        publisher.kill()
        await publisher.process.wait()
    await eventually(lambda: path.reconnecting, 10, message="A never noticed the drop")
    recording = path.outputs.recording
    assert recording is not None
    await recording.wait_idle()
    await a.client.app[RECORDING_STORAGE].flush(rid)
    return path, rid, await bucket.segments(rid)


async def when(predicate: Callable[[], Awaitable[bool]], message: str) -> None:
    async def holds() -> bool | None:
        return True if await predicate() else None

    await eventually(holds, 30, interval=0.2, message=message)


async def test_a_takeover_inside_the_window_continues_the_session_and_its_recording(
    nodes: tuple[Node, Node, Bucket],
    cluster_nodes: ClusterNodes,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    a, b, bucket = nodes
    stream_id, key = await cluster_nodes.new_stream(a, record=True, latency_mode="standard")
    path_a, rid, stored_by_a = await live_on_a_then_gone(
        a, bucket, stream_id, key, ffmpeg_exe, sources
    )
    await cluster_nodes.expire_lease(a, stream_id)  # A stopped renewing, as if it had died

    publisher = await push(ffmpeg_exe, sources.av, url(b, key))  # 6 s, then a clean end
    publishers.append(publisher)
    path_b = await eventually(lambda: b.paths.get(stream_id), 20)
    assert path_b.resumed and path_b.info.session_id == path_a.info.session_id
    assert path_b.lease_generation == path_a.lease_generation + 1
    assert await recording_of(path_b) == rid

    async def b_stored() -> bool:
        return any(s.name.startswith(tag_of(path_b)) for s in await bucket.segments(rid))

    await when(b_stored, "B stored nothing in the recording")

    # A learns only now that it lost the stream: its end and its recording's are refused.
    assert await a.ownership.keeper.renew_all() == {stream_id: "taken over"}
    await asyncio.wait_for(path_a.ended.wait(), 30)
    await one_session_one_recording(b, bucket, publisher, path_a, path_b, rid, stored_by_a)


async def test_a_newer_publish_on_another_node_takes_the_session_over_from_a_live_owner(
    nodes: tuple[Node, Node, Bucket],
    cluster_nodes: ClusterNodes,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    """Both nodes alive: B asks A to hand the stream over; A stores what it recorded and
    releases the lease without ending the session, and B continues it."""
    a, b, bucket = nodes
    stream_id, key = await cluster_nodes.new_stream(a, record=True, latency_mode="standard")
    on_a = await push(ffmpeg_exe, sources.av, url(a, key), loop=True)
    publishers.append(on_a)
    path_a = await eventually(lambda: a.paths.get(stream_id), 20)
    rid = await recording_of(path_a)

    async def two_stored() -> bool:
        return len(await bucket.segments(rid)) >= 2

    await when(two_stored, "A stored no two segments")

    publisher = await push(ffmpeg_exe, sources.av, url(b, key))  # 6 s, then a clean end
    publishers.append(publisher)
    path_b = await eventually(lambda: b.paths.get(stream_id), 20)
    assert path_a.ended.is_set() and a.paths.get(stream_id) is None  # released first
    assert path_b.resumed and path_b.info.session_id == path_a.info.session_id
    assert await recording_of(path_b) == rid
    stored_by_a = [s for s in await bucket.segments(rid) if not s.name.startswith(tag_of(path_b))]
    await one_session_one_recording(b, bucket, publisher, path_a, path_b, rid, stored_by_a)


def tag_of(path: LivePath) -> str:
    """How the names of the segments ``path`` cuts begin."""
    return f"{path.info.session_id[-8:]}-{path.lease_generation}-"


async def one_session_one_recording(
    b: Node,
    bucket: Bucket,
    publisher: Publisher,
    path_a: LivePath,
    path_b: LivePath,
    rid: str,
    stored_by_a: list[Segment],
) -> None:
    """Once B's publisher ends cleanly: one session (ended by B), one recording, ``ready``,
    listing A's segments then B's after a discontinuity, decodable from start to end."""
    stream_id, b_tag = path_b.stream_id, tag_of(path_b)
    code, stderr = await publisher.finish()
    assert code == 0, stderr
    await eventually(lambda: b.paths.get(stream_id) is None, 30)

    async def closed() -> tuple[list[LiveSession], list[Recording]] | None:
        sessions, recordings = await rows(b, stream_id)
        done = all(r.status != "recording" for r in recordings) and all(
            s.ended_at is not None for s in sessions
        )
        return (sessions, recordings) if done else None

    sessions, recordings = await eventually(closed, 30, message="the session stayed open")
    [session] = sessions
    assert session.id == path_a.info.session_id
    assert session.end_reason == "publisher_left" and session.ended_at is not None
    assert (session.lease_generation, session.reconnects) == (path_b.lease_generation, 1)
    assert session.recording_id == rid
    [recording] = recordings
    assert (recording.id, recording.status, recording.error) == (rid, "ready", None)
    assert recording.lease_generation == path_b.lease_generation

    playlist = await bucket.playlist(rid)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist and "#EXT-X-ENDLIST" in playlist
    segments = parse_media_playlist(playlist)
    names = [s.name for s in segments]
    first_b = next(i for i, s in enumerate(segments) if s.name.startswith(b_tag))
    assert names[: len(stored_by_a)] == [s.name for s in stored_by_a]
    assert first_b >= len(stored_by_a) and segments[first_b].discontinuity
    assert all(s.name.startswith(b_tag) for s in segments[first_b:])
    assert recording.segments == len(segments)
    data = b"".join([await bucket.get(f"{rid}/{name}") or b"" for name in names])
    decoded = await asyncio.to_thread(decode_ts, data)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
    total = sum(s.duration for s in segments)
    assert decoded.video_frames >= 30 * (total - 2), (decoded, total)


async def test_a_takeover_outside_the_window_closes_what_the_former_owner_left_open(
    nodes: tuple[Node, Node, Bucket],
    cluster_nodes: ClusterNodes,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    tmp_path: Path,
) -> None:
    a, b, bucket = nodes
    stream_id, key = await cluster_nodes.new_stream(a, record=True, latency_mode="standard")
    path_a, rid, stored_by_a = await live_on_a_then_gone(
        a, bucket, stream_id, key, ffmpeg_exe, sources
    )
    await set_column_seconds_ago(a.sessionmaker, stream_id, "renewed_at", 120)
    await cluster_nodes.expire_lease(a, stream_id)  # A was last seen two minutes ago

    publisher = await push(ffmpeg_exe, sources.av, url(b, key), loop=True)
    publishers.append(publisher)
    path_b = await eventually(lambda: b.paths.get(stream_id), 20)
    assert not path_b.resumed and path_b.info.session_id != path_a.info.session_id

    async def a_closed() -> tuple[list[LiveSession], list[Recording]] | None:
        sessions, recordings = await rows(b, stream_id)
        old = [r for r in recordings if r.id == rid]
        done = old and old[0].status != "recording"
        return (sessions, recordings) if done else None

    sessions, recordings = await eventually(a_closed, 30, message="A's recording stayed open")
    by_id = {s.id: s for s in sessions}
    assert by_id[path_a.info.session_id].end_reason == "lease_lost"
    assert by_id[path_b.info.session_id].ended_at is None
    old = next(r for r in recordings if r.id == rid)
    assert (old.status, old.segments) == ("ready", len(stored_by_a))
    assert "#EXT-X-ENDLIST" in await bucket.playlist(rid)
    assert a.paths.get(stream_id) is path_a and not path_a.ending  # A never heard of it
