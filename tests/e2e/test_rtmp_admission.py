"""Who gets what before a publish is accepted, against the whole app on loopback: commands out
of order, the events before a protocol error, the memory a stranger can make the server hold,
the per-address cap (which must not refuse real publishers behind one address) and the
warnings of refused connections.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from api.keys import PATHS
from tests.e2e.conftest import LiveServer, Publisher, Sources, push, serving
from tests.e2e.rtmp_clients import connect, rtmp, tolerate_reset
from tests.polling import eventually
from tests.protocol.helpers import (
    AUDIO,
    C0C1,
    C2,
    ERROR_JUNK,
    ServerOutput,
    basic_header,
    chunk_header,
    command,
    connect_command,
)
from tests.rtmp_client import first_statuses, read_to_eof

pytestmark = pytest.mark.e2e


# -- commands out of order --------------------------------------------------------------------


async def test_publish_without_connect_is_a_protocol_error(tmp_path: Path, sqlite_url: str) -> None:
    async with serving(tmp_path, sqlite_url) as live:
        stream = await live.create_stream()
        reader, writer = await connect(live)
        # No connect, so no application name to check: straight to createStream and publish.
        publish = command("publish", 3.0, None, stream["streamKey"], "live", stream_id=1, csid=8)
        writer.write(C0C1 + C2 + command("createStream", 2.0, None) + publish)
        await tolerate_reset(writer.drain())
        replies = ServerOutput(expect_handshake=True).feed(await read_to_eof(reader))
        writer.close()
        assert [reply.name for reply in replies if reply.raw.type_id == 20] == []
        assert rtmp(live).rejected == {"protocol_error": 1}
        assert live.app[PATHS].get(stream["id"]) is None


async def test_events_before_garbage_in_the_same_read_are_handled(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with serving(tmp_path, sqlite_url) as live:
        reader, writer = await connect(live)
        writer.write(C0C1 + C2 + connect_command() + ERROR_JUNK)
        replies = ServerOutput(expect_handshake=True).feed(await read_to_eof(reader))
        writer.close()
        results = [reply.values for reply in replies if reply.raw.type_id == 20]
        assert [(values[0], values[3]["code"]) for values in results] == [
            ("_result", "NetConnection.Connect.Success")
        ]
        assert rtmp(live).rejected == {"protocol_error": 1}


# -- memory held for strangers ----------------------------------------------------------------

STRANGERS = 10
"""Connections from one address: the default per-address cap."""
TRICKLED = 48
"""Writes of :data:`PIECE` per connection: about 3 MiB of a 16 MiB message each."""
PIECE = (basic_header(3, 4) + bytes(128)) * 512
"""512 continuation chunks (128-byte chunks, the size before any Set Chunk Size)."""
MAX_GROWTH_KB = 20 * 1024


def peak_rss_kb() -> int:
    """The test process's peak resident size (the server runs in it)."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


def reset_peak_rss() -> None:
    """Linux: make the peak start again from the current resident size."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.mark.parametrize(
    ("length", "writes", "reason"),
    [
        (0xFFFFFF, [PIECE] * TRICKLED, "protocol_error"),  # 16 MiB: past the limit at once
        (len(PIECE) // 129 * 128, [PIECE[:-129]], "handshake_timeout"),  # 64 KiB, unfinished
    ],
    ids=["16MiB", "64KiB"],
)
async def test_strangers_announcing_huge_messages_hold_little_memory(
    tmp_path: Path, sqlite_url: str, length: int, writes: list[bytes], reason: str
) -> None:
    async with serving(tmp_path, sqlite_url, rtmp_handshake_timeout=5.0) as live:
        header = C0C1 + C2 + chunk_header(0, 4, length=length, type_id=AUDIO, stream_id=1)
        clients = [await connect(live) for _ in range(STRANGERS)]

        async def trickle(writer: asyncio.StreamWriter) -> None:
            writer.write(header)
            for piece in writes:
                writer.write(piece)
                await writer.drain()

        reset_peak_rss()
        baseline = peak_rss_kb()
        await asyncio.gather(*(tolerate_reset(trickle(writer)) for _, writer in clients))
        for reader, writer in clients:
            await read_to_eof(reader)  # closed by the server, at the latest at the deadline
            writer.close()
        growth = peak_rss_kb() - baseline
        assert growth < MAX_GROWTH_KB, f"RSS grew by {growth} kB"
        assert rtmp(live).rejected == {reason: STRANGERS}
        await eventually(lambda: rtmp(live).connection_count == 0)


# -- the per-address cap and publishers behind one address -------------------------------------

PUBLISHERS = 16
"""More than the default per-address cap of 10."""
BATCH = 8
"""Publishers started together: the cap still bounds connections not yet publishing, so more
than 10 handshakes at the same instant from one address are refused by design."""


async def test_publishers_behind_one_address_all_go_live_with_the_default_cap(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    assert live_server.settings.rtmp_max_connections_per_address < PUBLISHERS
    streams = [await live_server.create_stream() for _ in range(PUBLISHERS)]
    registry, refused = live_server.app[PATHS], rtmp(live_server).rejected
    for start in range(0, PUBLISHERS, BATCH):
        for stream in streams[start : start + BATCH]:
            url = stream["upstreamUrl"]
            publishers.append(await push(ffmpeg_exe, sources.audio_only, url, loop=True))
        live = min(start + BATCH, PUBLISHERS)
        await eventually(lambda: registry.publishing() == live or bool(refused), within=60)  # noqa: B023
        assert refused == {}
    assert sorted(p.stream_id for p in registry.paths()) == sorted(s["id"] for s in streams)
    assert all(publisher.process.returncode is None for publisher in publishers)


async def test_the_cap_still_counts_connections_not_yet_publishing(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with serving(tmp_path, sqlite_url, rtmp_max_connections_per_address=2) as live:
        stream = await live.create_stream()
        publisher_reader, publisher_writer = await connect(live)
        publish = command("publish", 3.0, None, stream["streamKey"], "live", stream_id=1, csid=8)
        publisher_writer.write(
            C0C1 + C2 + connect_command() + command("createStream", 2.0, None) + publish
        )
        codes = [status["code"] for status in await first_statuses(publisher_reader)]
        assert codes == ["NetStream.Publish.Start"]
        held = [await connect(live) for _ in range(2)]  # the publisher no longer counts
        await eventually(lambda: rtmp(live).connection_count == 3)
        reader, writer = await connect(live)
        assert await read_to_eof(reader) == b""
        assert rtmp(live).rejected == {"address_limit": 1}
        for _, held_writer in [*held, (reader, writer), (publisher_reader, publisher_writer)]:
            held_writer.close()


# -- warnings of refused connections ------------------------------------------------------------

REFUSED = 40


async def test_refused_connections_do_not_flood_the_log(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serving(tmp_path, sqlite_url, rtmp_max_connections_per_address=1) as live:
        held = await connect(live)
        await eventually(lambda: rtmp(live).connection_count == 1)
        for _ in range(REFUSED):
            reader, writer = await connect(live)
            await read_to_eof(reader)
            writer.close()
        assert rtmp(live).rejected == {"address_limit": REFUSED}
        held[1].close()
    warnings = [
        record
        for record in caplog.records
        if record.name == "ingest.server" and record.levelno >= logging.WARNING
    ]
    assert 1 <= len(warnings) <= 2, [record.getMessage() for record in warnings]
