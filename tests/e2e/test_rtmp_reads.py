"""How the RTMP listener reads a publisher: media handed over in the read callback, events that
must wait (the publish) handled by the connection's task with reading paused, and reads batched
with the socket's low-water mark (``LIVERELAY_RTMP_READ_INTERVAL``) while publishing. Whatever
the timing, no byte may be lost or reordered: the hub must count every media byte sent.

Raw sockets on loopback against the whole app; the media is AAC-flagged filler, enough for the
hub's byte count (the outputs may refuse it; that does not matter here).
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import StreamWriter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import LiveServer, serving
from tests.e2e.rtmp_clients import connect, rtmp
from tests.polling import eventually
from tests.protocol.helpers import command, message_chunks, publish_bytes
from tests.rtmp_client import first_statuses, read_to_eof

pytestmark = pytest.mark.e2e

AUDIO = 8
FRAME_BYTES = 1000


def audio_frames(count: int, *, first_ms: int = 0, size: int = FRAME_BYTES) -> bytes:
    """``count`` AAC-flagged audio messages of ``size`` payload bytes, 21 ms apart."""
    payload = b"\xaf\x01" + bytes(size - 2)
    return b"".join(
        message_chunks(0, 6, payload, timestamp=first_ms + 21 * i, type_id=AUDIO, chunk_size=128)
        for i in range(count)
    )


@contextlib.asynccontextmanager
async def publishing(live: LiveServer) -> AsyncIterator[tuple[dict[str, Any], StreamWriter]]:
    """A new stream and a raw client publishing to it (closed at the end)."""
    stream = await live.create_stream()
    reader, writer = await connect(live)
    writer.write(publish_bytes(stream["streamKey"]))
    assert [c["code"] for c in await first_statuses(reader)] == ["NetStream.Publish.Start"]
    try:
        yield stream, writer
    finally:
        writer.close()


async def bytes_in(live: LiveServer, stream_id: str) -> int | None:
    """The live session's ``bytesIn``, or None while there is no session."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{live.http_url}/v1/livestreams/{stream_id}", headers=live.headers) as response,
    ):
        body: dict[str, Any] = await response.json()
    session = body.get("currentSession")
    return None if session is None else int(session["bytesIn"])


async def wait_for_bytes_in(live: LiveServer, stream_id: str, expected: int) -> None:
    """Poll the API until the session counted ``expected`` media bytes (20 s at most)."""
    seen: list[int | None] = []

    async def counted() -> bool:
        seen.append(await bytes_in(live, stream_id))
        return seen[-1] == expected

    await eventually(counted, 20, interval=0.05, message=lambda: f"bytesIn seen: {seen[-5:]}")


async def test_media_in_the_same_write_as_the_publish_is_all_received(
    tmp_path: Path, sqlite_url: str
) -> None:
    # The publish command waits for the authorizer with reading paused; the media parsed from
    # the same read must be handed over after it, not dropped.
    async with serving(tmp_path, sqlite_url) as live:
        stream = await live.create_stream()
        reader, writer = await connect(live)
        writer.write(publish_bytes(stream["streamKey"]) + audio_frames(40))
        codes = await first_statuses(reader)
        assert [c["code"] for c in codes] == ["NetStream.Publish.Start"]
        await wait_for_bytes_in(live, stream["id"], 40 * FRAME_BYTES)
        writer.close()


async def test_batched_reads_release_a_tail_below_the_low_water_mark_and_take_bursts(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with (
        serving(tmp_path, sqlite_url, rtmp_read_interval=0.3) as live,
        publishing(live) as (stream, writer),
    ):
        # 1.5 s at about 200 KB/s: the low-water mark rises to tens of kilobytes...
        sent = 0
        for i in range(30):
            writer.write(audio_frames(10, first_ms=210 * i))
            await writer.drain()
            sent += 10 * FRAME_BYTES
            await asyncio.sleep(0.05)
        # ...then one small message and silence: it must not wait below the mark.
        writer.write(audio_frames(1, first_ms=6300))
        await writer.drain()
        sent += FRAME_BYTES
        await wait_for_bytes_in(live, stream["id"], sent)
        # A 4 MB burst: far above the mark, read at once, nothing lost.
        writer.write(audio_frames(64, first_ms=7000, size=64_000))
        await writer.drain()
        await wait_for_bytes_in(live, stream["id"], sent + 64 * 64_000)


async def test_without_an_interval_every_byte_is_still_received(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with (
        serving(tmp_path, sqlite_url, rtmp_read_interval=0.0) as live,
        publishing(live) as (stream, writer),
    ):
        for i in range(5):
            writer.write(audio_frames(3, first_ms=63 * i))
            await writer.drain()
        await wait_for_bytes_in(live, stream["id"], 15 * FRAME_BYTES)


async def test_a_publisher_that_unpublishes_and_lingers_is_closed_cleanly(
    tmp_path: Path, sqlite_url: str
) -> None:
    # After FCUnpublish the connection has nothing left to do: the server closes it, without
    # mistaking the lingering client for one that never published (a handshake timeout).
    async with serving(tmp_path, sqlite_url, rtmp_handshake_timeout=1.0) as live:
        stream = await live.create_stream()
        reader, writer = await connect(live)
        writer.write(publish_bytes(stream["streamKey"]) + audio_frames(5))
        assert [c["code"] for c in await first_statuses(reader)] == ["NetStream.Publish.Start"]
        await asyncio.sleep(1.5)  # past the handshake deadline, while publishing
        writer.write(command("FCUnpublish", 5.0, None, stream["streamKey"]))
        await writer.drain()
        await read_to_eof(reader)  # the server closes; the client never did
        writer.close()
        assert rtmp(live).rejected == {}
        assert await bytes_in(live, stream["id"]) is None  # the session is over
