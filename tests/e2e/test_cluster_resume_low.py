"""A recorded low-latency stream moving between nodes stays one recording: B continues the
fMP4 recording A began in object storage, after a discontinuity and with its own
``EXT-X-MAP`` (names carry the ownership generation), and the whole recording decodes."""

from __future__ import annotations

import asyncio
import io

import av
import pytest

from tests.cluster_support import ClusterNodes, Node
from tests.cluster_support import cluster_nodes as cluster_nodes
from tests.e2e.conftest import Publisher, Sources, push
from tests.e2e.test_cluster_resume import (
    Bucket,
    live_on_a_then_gone,
    recording_of,
    rows,
    tag_of,
    url,
    when,
)
from tests.e2e.test_cluster_resume import nodes as nodes
from tests.polling import eventually
from workers.m3u8 import Segment

pytestmark = pytest.mark.e2e


def count_video_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data), format="mp4") as container:
        return sum(
            len(packet.decode())
            for packet in container.demux(video=0)
            if packet.size and packet.stream.type == "video"
        )


async def test_a_takeover_continues_a_low_latency_recording_with_a_new_map(
    nodes: tuple[Node, Node, Bucket],
    cluster_nodes: ClusterNodes,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    a, b, bucket = nodes
    stream_id, key = await cluster_nodes.new_stream(a, record=True, latency_mode="low")
    path_a, rid, stored_by_a = await live_on_a_then_gone(
        a, bucket, stream_id, key, ffmpeg_exe, sources
    )
    assert all(s.init and s.init.startswith(tag_of(path_a)) for s in stored_by_a)
    await cluster_nodes.expire_lease(a, stream_id)  # A stopped renewing, as if it had died

    publisher = await push(ffmpeg_exe, sources.av, url(b, key))  # 6 s, then a clean end
    publishers.append(publisher)
    path_b = await eventually(lambda: b.paths.get(stream_id), 20)
    assert path_b.resumed and await recording_of(path_b) == rid

    async def b_stored() -> bool:
        return any(s.name.startswith(tag_of(path_b)) for s in await bucket.segments(rid))

    await when(b_stored, "B stored nothing in the recording")
    # A learns only now that it lost the stream: its end and its recording's are refused.
    assert await a.ownership.keeper.renew_all() == {stream_id: "taken over"}
    await asyncio.wait_for(path_a.ended.wait(), 30)
    code, stderr = await publisher.finish()
    assert code == 0, stderr

    async def ready() -> bool:
        _, recordings = await rows(b, stream_id)
        return bool(recordings) and all(r.status == "ready" for r in recordings)

    await when(ready, "the recording never became ready")
    _, [recording] = await rows(b, stream_id)
    assert recording.id == rid
    playlist = await bucket.playlist(rid)
    assert "#EXT-X-VERSION:7" in playlist and playlist.endswith("#EXT-X-ENDLIST\n")
    segments = await bucket.segments(rid)
    b_tag = tag_of(path_b)
    first_b = next(i for i, s in enumerate(segments) if s.name.startswith(b_tag))
    assert [s.name for s in segments[:first_b]] == [s.name for s in stored_by_a]
    assert segments[first_b].discontinuity and str(segments[first_b].init).startswith(b_tag)
    assert playlist.count("#EXT-X-MAP:") == 2, playlist
    frames = 0
    for run in (segments[:first_b], segments[first_b:]):
        frames += await asyncio.to_thread(count_video_frames, await run_bytes(bucket, rid, run))
    total = sum(s.duration for s in segments)
    assert frames >= 30 * (total - 2), (frames, total)


async def run_bytes(bucket: Bucket, rid: str, run: list[Segment]) -> bytes:
    names = [str(run[0].init), *(s.name for s in run)]
    parts = [await bucket.get(f"{rid}/{name}") for name in names]
    assert all(part is not None for part in parts), names
    return b"".join(part or b"" for part in parts)
