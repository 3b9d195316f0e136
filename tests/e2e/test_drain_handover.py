"""Draining a node of a cluster hands its sessions over: two in-process nodes on one PostgreSQL
database, recordings in SeaweedFS, real ffmpeg publishers over loopback.

Node A is drained while a recorded stream with a reconnect window is live there: its publisher
is let go, its recording is stored but stays open, its session is not ended and the lease is
released. The publisher, publishing again, reaches node B, which continues the same session and
recording (a discontinuity). Without a window, or with a recording on A's disk, the drain ends
the session (``draining``) as on a node alone (SQLite: tests/e2e/test_drain.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.keys import DRAIN
from api.live.drain import begin_drain
from api.models import LiveSession, Recording
from tests.cluster_support import ClusterNodes, Node, released_seconds_ago
from tests.cluster_support import cluster_nodes as cluster_nodes
from tests.e2e.conftest import SEGMENT_SECONDS, Publisher, Sources, push
from tests.e2e.test_cluster_resume import (
    Bucket,
    one_session_one_recording,
    recording_of,
    rows,
    tag_of,
    url,
    when,
)
from tests.e2e.test_cluster_resume import nodes as nodes
from tests.polling import eventually
from tests.s3_support import S3Server, storage_on
from workers.live_path import LivePath

pytestmark = pytest.mark.e2e


async def drained(node: Node) -> None:
    """Drain ``node`` (as SIGTERM does) and wait until the drain is over."""
    app = node.client.app
    assert begin_drain(app, "test")
    await asyncio.wait_for(app[DRAIN].finished.wait(), 60)


async def live_on(
    node: Node, stream_id: str, key: str, ffmpeg: str, sources: Sources
) -> tuple[Publisher, LivePath]:
    publisher = await push(ffmpeg, sources.av, url(node, key), loop=True)
    path = await eventually(lambda: node.paths.get(stream_id), 20)
    return publisher, path


async def test_a_drain_hands_the_session_and_its_recording_over_to_the_next_node(
    nodes: tuple[Node, Node, Bucket],
    cluster_nodes: ClusterNodes,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    a, b, bucket = nodes
    stream_id, key = await cluster_nodes.new_stream(  # MPEG-TS: checked as in test_cluster_resume
        a, record=True, reconnect_window_seconds=60, latency_mode="standard"
    )
    on_a, path_a = await live_on(a, stream_id, key, ffmpeg_exe, sources)
    publishers.append(on_a)
    rid = await recording_of(path_a)

    async def two_stored() -> bool:
        return len(await bucket.segments(rid)) >= 2

    await when(two_stored, "A stored no two segments")

    await drained(a)
    await asyncio.wait_for(on_a.process.wait(), 30)  # A let its publisher go
    [session], [recording] = await rows(b, stream_id)
    assert (session.ended_at, session.end_reason, recording.status) == (None, None, "recording")
    assert path_a.handed_over and a.paths.get(stream_id) is None
    stored_by_a = await bucket.segments(rid)
    assert stored_by_a and all(s.name.startswith(tag_of(path_a)) for s in stored_by_a)
    assert "#EXT-X-ENDLIST" not in await bucket.playlist(rid)

    publisher = await push(ffmpeg_exe, sources.av, url(b, key))  # 6 s, then a clean end
    publishers.append(publisher)
    path_b = await eventually(lambda: b.paths.get(stream_id), 20)
    assert path_b.resumed and path_b.info.session_id == path_a.info.session_id
    assert path_b.lease_generation == path_a.lease_generation + 1
    assert await recording_of(path_b) == rid
    await one_session_one_recording(b, bucket, publisher, path_a, path_b, rid, stored_by_a)


@pytest.mark.parametrize(
    ("window", "record", "hands_over"),
    [(0, False, False), (60, True, False), (60, False, True)],
    ids=["no-window", "recording-on-local-disk", "not-recorded"],
)
async def test_a_drain_ends_the_sessions_no_other_node_can_continue(
    cluster_nodes: ClusterNodes,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    window: int,
    record: bool,
    hands_over: bool,
) -> None:
    """Without a reconnect window, or with the recording on the drained node's disk, the
    session ends ``draining``; a stream with a window and no recording is handed over."""
    a = await cluster_nodes.start("node-a")
    stream_id, key = await cluster_nodes.new_stream(
        a, record=record, reconnect_window_seconds=window
    )
    on_a, path_a = await live_on(a, stream_id, key, ffmpeg_exe, sources)
    publishers.append(on_a)
    if record:
        await recording_of(path_a)
    await eventually(lambda: path_a.hub.bytes_in > 0 or None, 20)

    await drained(a)
    [session], recordings = await rows(a, stream_id)
    if hands_over:
        assert (session.ended_at, session.end_reason) == (None, None)
    else:
        assert session.ended_at is not None and session.end_reason == "draining"
        assert all(r.status != "recording" for r in recordings)
    assert len(recordings) == int(record)
    assert path_a.handed_over is hands_over


async def test_a_session_nobody_continues_is_closed_once_its_window_passed(
    cluster_nodes: ClusterNodes,
    seaweedfs: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    """Neither a running node (C) nor one starting inside the window (D: a rolling update
    starts the next pod) closes a handed-over session: it waits for the stream's next owner.
    Once the window has passed with nobody publishing again, the periodic sweep of a running
    node closes it (``publisher_left``) and its recording (``ready``)."""
    bucket = Bucket(seaweedfs)
    settings: dict[str, Any] = {
        **storage_on(seaweedfs, bucket.prefix, monkeypatch),
        "hls_segment_seconds": SEGMENT_SECONDS,
    }
    a = await cluster_nodes.start("node-a", **settings)
    c = await cluster_nodes.start("node-c", lease_seconds=1.0, **settings)  # sweeps every 1 s
    stream_id, key = await cluster_nodes.new_stream(a, record=True, reconnect_window_seconds=60)
    on_a, path_a = await live_on(a, stream_id, key, ffmpeg_exe, sources)
    publishers.append(on_a)
    rid = await recording_of(path_a)

    async def two_stored() -> bool:
        return len(await bucket.segments(rid)) >= 2

    await when(two_stored, "A stored no two segments")
    await drained(a)
    stored_by_a = await bucket.segments(rid)

    d = await cluster_nodes.start("node-d", **settings)
    [session], [recording] = await rows(d, stream_id)
    assert (session.ended_at, recording.status) == (None, "recording")

    await released_seconds_ago(c.sessionmaker, stream_id, 120)  # the window has passed

    async def closed() -> tuple[LiveSession, Recording] | None:
        [session], [recording] = await rows(c, stream_id)
        done = session.ended_at is not None and recording.status != "recording"
        return (session, recording) if done else None

    session, recording = await eventually(closed, 30, message="nobody closed the session")
    assert session.id == path_a.info.session_id and session.end_reason == "publisher_left"
    assert (recording.id, recording.status, recording.segments) == (rid, "ready", len(stored_by_a))
    assert "#EXT-X-ENDLIST" in await bucket.playlist(rid)
    assert c.paths.get(stream_id) is None
