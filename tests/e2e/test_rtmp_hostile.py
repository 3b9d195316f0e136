"""Hostile RTMP clients against the whole app on loopback: per-address connection limits,
trickled handshakes, garbage next to a real ffmpeg publisher, stream-key guessing, clients that
never read, floods and silent publishers. Each limit hit must be a counted close with a reason,
and no stream key may reach the logs.

The hostile clients are raw sockets speaking bytes built with ``tests/protocol/helpers.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    has_segment,
    push,
    serving,
    wait_for_playlist,
)
from tests.e2e.rtmp_clients import connect, rtmp, tolerate_reset
from tests.polling import eventually
from tests.protocol.helpers import (
    C0C1,
    C2,
    VIDEO,
    command,
    connect_command,
    publish_bytes,
)
from tests.protocol.helpers import message_chunks as chunks
from tests.rtmp_client import first_statuses, read_to_eof
from workers.m3u8 import parse_media_playlist

pytestmark = pytest.mark.e2e

HANDSHAKE_REPLY = 1 + 2 * 1536
"""S0 + S1 + S2."""


async def publish_raw(live: LiveServer, key: str, **options: str) -> list[dict[str, Any]]:
    """Publish with a raw client; return the first statuses the server answered (the
    connection is then left: a refused one is closed by the server, an accepted one idles)."""
    reader, writer = await connect(live, **options)
    writer.write(publish_bytes(key))
    try:
        return await first_statuses(reader)
    finally:
        writer.close()


async def publish_then_fall_silent(live: LiveServer, key: str) -> list[dict[str, Any]]:
    """Publish, then send nothing (without closing) until the server closes; return the
    statuses it answered the publish with."""
    reader, writer = await connect(live)
    writer.write(publish_bytes(key))
    try:
        codes = await first_statuses(reader)
        await read_to_eof(reader)
        return codes
    finally:
        writer.close()


# -- per-address connection limit -----------------------------------------------------------------


async def test_connections_per_address_are_limited(tmp_path: Path, sqlite_url: str) -> None:
    async with serving(tmp_path, sqlite_url, rtmp_max_connections_per_address=3) as live:
        held = [await connect(live) for _ in range(3)]
        await eventually(lambda: rtmp(live).connection_count == 3)
        reader, writer = await connect(live)
        assert await read_to_eof(reader) == b""  # closed at once, before any handshake
        writer.close()
        assert rtmp(live).rejected == {"address_limit": 1}

        other_reader, other_writer = await connect(live, local_host="127.0.0.2")
        other_writer.write(C0C1)
        assert len(await other_reader.readexactly(HANDSHAKE_REPLY)) == HANDSHAKE_REPLY
        other_writer.close()

        held.pop()[1].close()
        await eventually(lambda: rtmp(live).connection_count == 2)
        reader, writer = await connect(live)
        writer.write(C0C1)
        assert len(await reader.readexactly(HANDSHAKE_REPLY)) == HANDSHAKE_REPLY
        for _, held_writer in [*held, (reader, writer)]:
            held_writer.close()


# -- slow and half-open clients -------------------------------------------------------------------


async def test_handshake_trickled_a_byte_a_second_is_closed_by_the_timeout(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with serving(tmp_path, sqlite_url, rtmp_handshake_timeout=2.0) as live:
        reader, writer = await connect(live)

        async def trickle() -> None:
            for byte in C0C1:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)

        trickling = asyncio.create_task(tolerate_reset(trickle()))
        assert await read_to_eof(reader) == b""
        trickling.cancel()
        writer.close()
        assert rtmp(live).rejected == {"handshake_timeout": 1}
        await eventually(lambda: rtmp(live).connection_count == 0)


async def test_client_that_does_not_read_is_dropped(tmp_path: Path, sqlite_url: str) -> None:
    async with serving(tmp_path, sqlite_url, rtmp_max_send_buffer=65536) as live:
        _, writer = await connect(live, receive_buffer=4096)
        # Every FCPublish is answered with an onFCPublish that repeats the 60000-byte name.
        fc_publish = command("FCPublish", 3.0, None, "n" * 60000)

        async def flood() -> None:
            writer.write(C0C1 + C2 + connect_command())
            for _ in range(2000):  # at most 120 MB; the server gives up long before
                writer.write(fc_publish)
                await writer.drain()

        await asyncio.wait_for(tolerate_reset(flood()), timeout=30)
        await eventually(lambda: rtmp(live).rejected.get("slow_reader") == 1)
        await eventually(lambda: rtmp(live).connection_count == 0)
        assert rtmp(live).rejected == {"slow_reader": 1}
        writer.close()


async def test_unsent_replies_do_not_keep_a_timed_out_connection(
    tmp_path: Path, sqlite_url: str
) -> None:
    # Replies stay under the send-buffer cap but exceed what the kernel holds: the handshake
    # timeout's close cannot flush them, and must give up after a grace period.
    overrides = {"rtmp_handshake_timeout": 1.0, "rtmp_max_send_buffer": 64 * 1024 * 1024}
    async with serving(tmp_path, sqlite_url, **overrides) as live:
        reader, writer = await connect(live, receive_buffer=4096)
        writer.write(C0C1 + C2 + connect_command())
        writer.write(command("FCPublish", 3.0, None, "n" * 60000) * 150)  # 9 MB of replies
        await tolerate_reset(writer.drain())
        await eventually(lambda: rtmp(live).rejected == {"handshake_timeout": 1})
        assert rtmp(live).connection_count == 1  # still flushing: it keeps its slot
        await eventually(lambda: rtmp(live).connection_count == 0, within=15)
        # Aborted: reading now gets a reset, not the megabytes a lingering close would send.
        assert len(await read_to_eof(reader)) < 1_000_000
        writer.close()


async def test_silent_publisher_is_dropped_by_the_idle_timeout(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with serving(tmp_path, sqlite_url, rtmp_idle_timeout=1.0) as live:
        stream = await live.create_stream()
        codes = await publish_then_fall_silent(live, stream["streamKey"])
        assert [status["code"] for status in codes] == ["NetStream.Publish.Start"]
        assert rtmp(live).rejected == {"idle_timeout": 1}
        await eventually(lambda: rtmp(live).connection_count == 0)


async def test_flood_above_the_bitrate_limit_is_dropped(tmp_path: Path, sqlite_url: str) -> None:
    async with serving(tmp_path, sqlite_url, rtmp_max_publish_kbps=1000) as live:
        reader, writer = await connect(live)
        frame = chunks(0, 6, b"\x17\x01" + bytes(60000), type_id=VIDEO, chunk_size=128)
        writer.write(C0C1 + C2 + connect_command() + frame * 20)  # 1.2 MB: ~1900 kbit/s in 5 s
        await tolerate_reset(writer.drain())
        await read_to_eof(reader)
        writer.close()
        assert rtmp(live).rejected == {"bitrate_limit": 1}


# -- garbage next to a real publisher -------------------------------------------------------------


async def test_garbage_is_a_protocol_error_and_a_real_publisher_keeps_going(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream()
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    playlist = await wait_for_playlist(stream["downstreamUrl"], has_segment)
    noise = random.Random(7).randbytes(4000)
    for garbage in (b"\x07" + noise, C0C1 + C2 + b"\xc7" + noise):  # bad version; bad chunk
        reader, writer = await connect(live_server)
        writer.write(garbage)
        await tolerate_reset(writer.drain())
        await read_to_eof(reader)
        writer.close()
    assert rtmp(live_server).rejected == {"protocol_error": 2}
    seen = len(parse_media_playlist(playlist))
    await wait_for_playlist(
        stream["downstreamUrl"], lambda text: len(parse_media_playlist(text)) >= seen + 2
    )
    assert publisher.process.returncode is None


# -- stream-key guessing --------------------------------------------------------------------------


OUR_LOGGERS = ("api", "config", "ingest", "workers")


def capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Everything at INFO (the default level), and our own loggers at DEBUG. Third-party DEBUG
    logs are not covered: aiosqlite's, for one, print SQL parameters."""
    caplog.set_level(logging.INFO)
    for name in OUR_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


def authorizer_answers(caplog: pytest.LogCaptureFixture) -> int:
    """How many keys the database authorizer was asked about (it logs every answer)."""
    return sum(record.name == "api.live.publish_auth" for record in caplog.records)


async def test_bad_keys_are_throttled_per_address_without_asking_the_authorizer(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    capture_logs(caplog)
    async with serving(tmp_path, sqlite_url, rtmp_auth_failures_per_minute=3) as live:
        stream = await live.create_stream()
        guesses = [f"guess-{i}-0f3a9c" for i in range(4)]
        for guess in guesses[:3]:
            codes = await publish_raw(live, guess)
            assert [(c["code"], c["description"]) for c in codes] == [
                ("NetStream.Publish.BadName", "unknown stream key")
            ]
        assert authorizer_answers(caplog) == 3

        for key in (guesses[3], stream["streamKey"]):  # refused unchecked, even the right key
            codes = await publish_raw(live, key)
            assert [(c["code"], c["description"]) for c in codes] == [
                ("NetStream.Publish.BadName", "Too many refused stream keys; try again later.")
            ]
        assert authorizer_answers(caplog) == 3
        assert rtmp(live).rejected == {"bad_key": 3, "auth_throttled": 2}

        codes = await publish_raw(live, stream["streamKey"], local_host="127.0.0.2")
        assert [c["code"] for c in codes] == ["NetStream.Publish.Start"]
        for key in [*guesses, stream["streamKey"]]:
            assert key not in caplog.text


async def test_stream_keys_never_reach_the_logs(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    capture_logs(caplog)
    async with serving(tmp_path, sqlite_url, rtmp_idle_timeout=1.0) as live:
        stream = await live.create_stream()
        key = stream["streamKey"]
        # An encoder configured with the key in the server URL sends it as the app name.
        reader, writer = await connect(live)
        writer.write(publish_bytes("", app=f"live/{key}"))
        codes = await first_statuses(reader)
        writer.close()
        assert [c["code"] for c in codes] == ["NetConnection.Connect.Rejected"]
        await publish_raw(live, key + "x")
        await publish_then_fall_silent(live, key)
        assert rtmp(live).rejected == {"bad_app": 1, "bad_key": 1, "idle_timeout": 1}
    assert stream["id"] in caplog.text
    assert key not in caplog.text
