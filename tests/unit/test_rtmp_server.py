"""The RTMP listener on its own: a real server on a loopback port with its live paths stubbed
(:class:`~tests.fakes.StubAdmission`), and raw RTMP clients (:mod:`tests.rtmp_client`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.settings import Settings
from ingest.live import END_MESSAGES
from ingest.server import RTMPServer
from tests.fakes import FakeClock, StubAdmission, StubPath
from tests.polling import eventually
from tests.protocol.helpers import C0C1, C2, ERROR_JUNK, VIDEO, publish_bytes
from tests.rtmp_client import RawPublisher, first_statuses, read_to_eof

KEY = "k" * 20
STREAM = "5" * 24
AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"


@pytest.fixture
def admission() -> StubAdmission:
    return StubAdmission({KEY: STREAM})


@pytest.fixture
async def server(tmp_path: Path, admission: StubAdmission) -> AsyncIterator[RTMPServer]:
    settings = Settings(data_dir=tmp_path, rtmp_host="127.0.0.1", rtmp_port=0)
    server = RTMPServer(settings, admission=admission, clock=FakeClock())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def publishing(server: RTMPServer, admission: StubAdmission) -> tuple[RawPublisher, StubPath]:
    """A publisher accepted with :data:`KEY`, and the path it feeds."""
    publisher, codes = await RawPublisher.start(server.port, KEY)
    assert codes == ["NetStream.Publish.Start"]
    return publisher, admission.paths[-1]


async def test_an_accepted_publish_feeds_its_path(
    server: RTMPServer, admission: StubAdmission
) -> None:
    publisher, path = await publishing(server, admission)
    host, port = publisher.writer.get_extra_info("sockname")[:2]
    assert path.publisher.client_address == f"{host}:{port}"
    assert await publisher.send(VIDEO, 0, AVC_HEADER)
    await eventually(lambda: path.hub.bytes_in == len(AVC_HEADER))

    publisher.close()
    await asyncio.wait_for(path.left.wait(), 10)
    [departure] = path.departures
    assert departure.publisher is path.publisher
    assert not departure.clean and departure.reason == "publisher_left"  # may come back
    await eventually(lambda: server.connection_count == 0)
    assert server.rejected == {}


async def test_a_refused_key_is_told_why_and_closed(
    server: RTMPServer, admission: StubAdmission
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(publish_bytes("not-a-key"))
    [status] = await first_statuses(reader)
    assert status["level"] == "error"
    assert status["code"] == "NetStream.Publish.BadName"
    assert status["description"] == "unknown stream key"
    await read_to_eof(reader)  # the server closes
    writer.close()
    assert admission.asked == ["not-a-key"] and admission.paths == []
    assert server.rejected == {"bad_key": 1}
    await eventually(lambda: server.connection_count == 0)


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", C0C1 + C2 + ERROR_JUNK],
    ids=["not-rtmp", "after-the-handshake"],
)
async def test_garbage_closes_only_its_own_connection(
    server: RTMPServer, admission: StubAdmission, garbage: bytes
) -> None:
    publisher, path = await publishing(server, admission)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(garbage)
    await read_to_eof(reader)  # the server closes it
    writer.close()
    assert server.rejected == {"protocol_error": 1}

    assert await publisher.send(VIDEO, 0, AVC_HEADER)
    await eventually(lambda: path.hub.bytes_in == len(AVC_HEADER))
    await eventually(lambda: server.connection_count == 1)
    assert path.departures == []
    publisher.close()


async def test_the_path_ending_the_publish_closes_the_socket_with_the_reason(
    server: RTMPServer, admission: StubAdmission
) -> None:
    publisher, path = await publishing(server, admission)
    path.publisher.disconnect("deleted")
    statuses = await publisher.statuses_until_closed()
    assert [(s["code"], s["description"]) for s in statuses] == [
        ("NetStream.Unpublish.Success", END_MESSAGES["deleted"])
    ]
    await eventually(lambda: server.connection_count == 0)
    assert path.departures == []  # the path let it go: it does not leave again
    assert server.rejected == {}
    publisher.close()


async def test_closing_the_server_ends_every_connection(
    server: RTMPServer, admission: StubAdmission
) -> None:
    publisher, path = await publishing(server, admission)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(C0C1)  # mid-handshake
    await eventually(lambda: server.connection_count == 2)

    await server.close()
    assert server.connection_count == 0
    assert await publisher.closed_by_server()
    await read_to_eof(reader)
    writer.close()
    publisher.close()
    [departure] = path.departures
    assert not departure.clean and departure.reason == "publisher_left"
