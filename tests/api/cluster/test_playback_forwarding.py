"""Live playback from any node: a node without the stream's live path forwards playlist and
segment requests to the node holding the stream's live lease (PostgreSQL, two in-process nodes,
a real ffmpeg publisher)."""

from __future__ import annotations

import math
from pathlib import Path

import imageio_ffmpeg
from multidict import CIMultiDict

from api.cluster.forwarding import FORWARDED_HEADER, blocking_read_seconds
from api.cluster.leases import StreamLeases
from tests.cluster_support import ClusterNodes, Node
from tests.e2e.conftest import (
    Publisher,
    fetch,
    free_port,
    has_segment,
    make_source,
    push,
    wait_for_playlist,
)
from tests.llhls_support import check_conformance
from tests.polling import eventually
from workers.llhls_output import BLOCKING_TARGET_DURATIONS
from workers.m3u8 import parse_media_playlist

COMPARED = ("Content-Type", "Cache-Control", "ETag", "Last-Modified", "Content-Length")


async def publish_on(node: Node, key: str, ffmpeg: str, tmp_path: Path) -> Publisher:
    source = make_source(ffmpeg, tmp_path / "av.flv", video=True, audio=True, seconds=4)
    return await push(ffmpeg, source, f"rtmp://127.0.0.1:{node.rtmp_port}/live/{key}", loop=True)


async def test_playback_of_a_stream_live_elsewhere_is_forwarded_to_its_owner(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, tmp_path: Path
) -> None:
    a, b = two_nodes
    stream_id, key = await cluster_nodes.new_stream(a, latency_mode="standard")  # files on disk
    path = f"/live/{stream_id}/index.m3u8"
    publisher = await publish_on(a, key, imageio_ffmpeg.get_ffmpeg_exe(), tmp_path)
    try:
        await wait_for_playlist(a.url + path, has_segment)
        assert b.paths.get(stream_id) is None

        # A registry row pointing back at the asking node: one hop, then its own 404.
        await cluster_nodes.set_internal_url(b, a.node_id, b.url)
        status, _, _ = await fetch(b.url + path)
        assert status == 404

        # The owner cannot be reached: a JSON 502 (once the remembered owner has expired).
        await cluster_nodes.set_internal_url(b, a.node_id, f"http://127.0.0.1:{free_port()}")

        async def unreachable() -> dict[str, object] | None:
            response = await b.client.get(path)
            return await response.json() if response.status == 502 else None

        error = await eventually(unreachable, 10)
        assert error["code"] == "owner_unreachable"
        assert a.node_id in str(error["message"])

        # The owner reachable: B answers what A answers.
        await cluster_nodes.set_internal_url(b, a.node_id, a.url)

        async def same_playlist() -> tuple[bytes, dict[str, str]] | None:
            before = await fetch(a.url + path)
            forwarded = await fetch(b.url + path)
            after = await fetch(a.url + path)
            if not before[1] == forwarded[1] == after[1] or forwarded[0] != 200:
                return None
            return forwarded[1], forwarded[2]

        playlist, headers = await eventually(same_playlist, 10)
        _, _, owner_headers = await fetch(a.url + path)
        for name in ("Content-Type", "Cache-Control"):
            assert headers[name] == owner_headers[name]

        segment = parse_media_playlist(playlist.decode())[0].name
        segment_path = f"/live/{stream_id}/{segment}"
        owner_status, owner_body, owner_headers = await fetch(a.url + segment_path)
        status, body, headers = await fetch(b.url + segment_path)
        assert (status, body) == (owner_status, owner_body) == (200, owner_body)
        assert len(body) > 0
        forwarded_headers, owner_headers = CIMultiDict(headers), CIMultiDict(owner_headers)
        for name in COMPARED:
            assert forwarded_headers.get(name) == owner_headers.get(name), name
        assert owner_headers["ETag"]

        # A forwarded request is answered from the node's own files, never forwarded again.
        forwarded = await b.client.get(path, headers={FORWARDED_HEADER: "1"})
        assert forwarded.status == 404
        forwarded = await b.client.get(segment_path, headers={FORWARDED_HEADER: "1"})
        assert forwarded.status == 404
    finally:
        publisher.kill()
        await publisher.process.wait()


async def test_only_a_live_lease_sends_playback_elsewhere(
    two_nodes: list[Node], cluster_nodes: ClusterNodes
) -> None:
    a, b = two_nodes
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)
    stream_id, _ = await cluster_nodes.new_stream(a)
    path = f"/live/{stream_id}/index.m3u8"
    directory = a.settings.live_dir / stream_id
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_bytes(b"#EXTM3U\n")

    no_lease = await b.client.get(path)
    assert no_lease.status == 404
    assert (await no_lease.json())["code"] == "not_found"

    lease = await StreamLeases(a.sessionmaker, a.node_id, 60).claim(stream_id)
    assert lease is not None

    async def forwarded() -> bytes | None:
        response = await b.client.get(path)
        return await response.read() if response.status == 200 else None

    assert await eventually(forwarded, 10) == b"#EXTM3U\n"

    await cluster_nodes.expire_lease(a, stream_id)

    async def not_found() -> bool:
        return (await b.client.get(path)).status == 404

    assert await eventually(not_found, 10)


async def test_low_latency_blocking_requests_are_forwarded_with_their_query(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, tmp_path: Path
) -> None:
    a, b = two_nodes
    stream_id, key = await cluster_nodes.new_stream(a, latency_mode="low")
    path = f"/live/{stream_id}/index.m3u8"
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    # Not looped: a loop's timestamp jump makes a part longer than the part target.
    source = make_source(ffmpeg, tmp_path / "long.flv", video=True, audio=True, seconds=12)
    publisher = await push(ffmpeg, source, f"rtmp://127.0.0.1:{a.rtmp_port}/live/{key}")
    try:
        text = await wait_for_playlist(b.url + path, lambda t: "EXTINF" in t and "PART" in t)
        playlist = check_conformance(text)
        last = playlist.segments[-1]
        msn, part = (last.msn + 1, 0) if last.uri is not None else (last.msn, len(last.parts))
        hint = playlist.hint
        assert hint is not None
        status, body, headers = await fetch(f"{b.url}{path}?_HLS_msn={msn}&_HLS_part={part}")
        assert status == 200 and headers["Cache-Control"] == "no-cache"
        after = check_conformance(body.decode())
        assert hint in [uri for seg in after.segments for _, uri, _ in seg.parts]
        status, data, headers = await fetch(f"{b.url}/live/{stream_id}/{hint}")
        assert status == 200 and b"moof" in data[:16]
        assert headers["Cache-Control"] == "public, max-age=86400, immutable"
        status, _, _ = await fetch(f"{b.url}{path}?_HLS_msn={msn + 10}")
        assert status == 400, "the query reached the owner, which refused it"
        init = f"{b.url}/live/{stream_id}/{playlist.segments[0].map}"
        status, data, headers = await fetch(init)
        assert status == 200 and headers["Content-Type"] == "video/mp4"
    finally:
        publisher.kill()
        await publisher.process.wait()


def test_a_forwarded_blocking_request_may_wait_longer_than_the_owner_holds_it() -> None:
    for segment_seconds in (0.5, 1.0, 2.0, 4.0, 6.0):
        held = BLOCKING_TARGET_DURATIONS * math.ceil(segment_seconds)
        assert blocking_read_seconds(segment_seconds) > held
