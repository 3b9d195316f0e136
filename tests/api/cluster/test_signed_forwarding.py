"""Signed playback across nodes (PostgreSQL, two in-process nodes, a real ffmpeg publisher): a
node forwards a signed stream's playback with its token to the owner, and a key deleted through
another node stops the owner's new playlist requests within the key cache TTL."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
from sqlalchemy import select

from api import queries
from api.models import LiveStream, SigningKey
from api.playback_tokens import KEY_TTL_SECONDS, generate_key_pair, issue_playback_token
from tests.api.cluster.test_playback_forwarding import publish_on
from tests.cluster_support import ClusterNodes, Node
from tests.e2e.conftest import fetch, has_segment, wait_for_playlist
from tests.polling import eventually
from workers.m3u8 import parse_media_playlist


async def test_signed_playback_is_forwarded_and_a_key_deleted_elsewhere_stops_it(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, tmp_path: Path
) -> None:
    a, b = two_nodes
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)
    stream_id, key = await cluster_nodes.new_stream(a, playback_policy="signed")
    private, public = generate_key_pair()
    async with b.sessionmaker() as session, session.begin():
        account_id = await session.scalar(
            select(LiveStream.account_id).where(LiveStream.id == stream_id)
        )
        assert account_id is not None
        kid = (await queries.create_signing_key(session, account_id, public)).id
    token = issue_playback_token(stream_id, kid, private, 600)
    path = f"/live/{stream_id}/index.m3u8"
    publisher = await publish_on(a, key, imageio_ffmpeg.get_ffmpeg_exe(), tmp_path)
    try:
        playlist = await wait_for_playlist(f"{a.url}{path}?token={token}", has_segment)
        assert (await fetch(a.url + path))[0] == 403

        # Through B: forwarded to A with the token, which A checks again.
        assert (await fetch(b.url + path))[0] == 403
        status, body, _ = await fetch(f"{b.url}{path}?token={token}")
        assert status == 200 and f"?token={token}" in body.decode()
        segment = parse_media_playlist(playlist)[0].name.split("?")[0]
        status, _, headers = await fetch(f"{b.url}/live/{stream_id}/{segment}?token={token}")
        assert status == 200 and headers["Cache-Control"].startswith("private")

        # The key deleted through B's database: A refuses once its key cache expires.
        async with b.sessionmaker() as session, session.begin():
            row = await session.get(SigningKey, kid)
            assert row is not None
            await queries.delete_signing_key(session, row)

        async def refused() -> bool:
            return (await fetch(f"{a.url}{path}?token={token}"))[0] == 403

        await eventually(refused, KEY_TTL_SECONDS + 5)
    finally:
        publisher.kill()
        await publisher.process.wait()
