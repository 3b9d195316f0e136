"""A live thumbnail asked of a node the stream is not live on is made by the stream's owner, with
the asked size, and a recording's thumbnail by the node whose disk holds it (PostgreSQL, two
in-process nodes, a real ffmpeg publisher and real recorded segments)."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg

from api.keys import THUMBNAILS
from tests.api.cluster.test_playback_forwarding import publish_on
from tests.api.cluster.test_recording_nodes import recorded_on
from tests.api.test_thumbnails import write_recording
from tests.cluster_support import ClusterNodes, Node
from tests.e2e.conftest import fetch, free_port, has_segment, wait_for_playlist
from tests.thumbnail_support import assert_pattern, make_media


async def test_a_thumbnail_of_a_stream_live_elsewhere_comes_from_its_owner(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, tmp_path: Path
) -> None:
    a, b = two_nodes
    stream_id, key = await cluster_nodes.new_stream(a)
    publisher = await publish_on(a, key, imageio_ffmpeg.get_ffmpeg_exe(), tmp_path)
    try:
        await wait_for_playlist(f"{a.url}/live/{stream_id}/index.m3u8", has_segment)
        await cluster_nodes.set_internal_url(b, a.node_id, a.url)
        status, image, headers = await fetch(f"{b.url}/live/{stream_id}/thumbnail.jpg?width=320")
        assert status == 200, image
        assert headers["Cache-Control"] == "public, max-age=5"
        assert_pattern(image, (320, 180))
        assert b.client.app[THUMBNAILS].decoded == 0 and a.client.app[THUMBNAILS].decoded == 1
    finally:
        publisher.kill()
        await publisher.process.wait()


async def test_a_thumbnail_of_a_recording_on_another_nodes_disk_comes_from_that_node(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, tmp_path: Path
) -> None:
    a, b = two_nodes
    stream_id, _ = await cluster_nodes.new_stream(a)
    recording_id = await recorded_on(a, stream_id)
    segment = make_media(imageio_ffmpeg.get_ffmpeg_exe(), tmp_path / "v.ts")
    write_recording(a.settings.recordings_dir / recording_id, segment, fresh=False)
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)

    url = f"{b.url}/recordings/{recording_id}/thumbnail.jpg?time=3&height=180"
    status, image, headers = await fetch(url)
    assert status == 200, image
    assert headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert_pattern(image, (320, 180))
    assert b.client.app[THUMBNAILS].decoded == 0 and a.client.app[THUMBNAILS].decoded == 1
    # The writer's own errors come through (a time past the end).
    status, body, _ = await fetch(f"{b.url}/recordings/{recording_id}/thumbnail.jpg?time=9")
    assert status == 400 and b"time_out_of_range" in body

    # The writer unreachable: 502, as for the recording's playback.
    await cluster_nodes.set_internal_url(b, a.node_id, f"http://127.0.0.1:{free_port()}")
    status, body, _ = await fetch(f"{b.url}/recordings/{recording_id}/thumbnail.png")
    assert status == 502 and b"recording_node_unreachable" in body
