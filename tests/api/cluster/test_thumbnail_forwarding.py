"""A live thumbnail asked of a node the stream is not live on is made by the stream's owner, with
the asked size (PostgreSQL, two in-process nodes, a real ffmpeg publisher)."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg

from api.keys import THUMBNAILS
from tests.api.cluster.test_playback_forwarding import publish_on
from tests.cluster_support import ClusterNodes, Node
from tests.e2e.conftest import fetch, has_segment, wait_for_playlist
from tests.thumbnail_support import assert_pattern


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
