"""The control bus on a real PostgreSQL: messages addressed to one node reach only it, a
broadcast reaches every other node, and a listening connection the server kills is opened
again, listens again and asks for a resync. On SQLite the bus is local to the one node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.bus import (
    CHANNEL,
    Connect,
    LocalBus,
    Message,
    PostgresBus,
    asyncpg_connect,
    listener_dsn,
)
from api.database import create_engine
from config import Secret, Settings
from tests.polling import eventually

Sessions = async_sessionmaker[AsyncSession]


class Received:
    """What one node's bus handed to its receiver."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.resyncs = 0

    async def on_message(self, message: Message) -> None:
        self.messages.append(message)

    async def on_resync(self) -> None:
        self.resyncs += 1

    def kinds(self) -> list[str]:
        return [message.kind for message in self.messages]


@pytest.fixture
def pg_settings(postgresql_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=Secret(postgresql_url))


@pytest.fixture
async def sessions(pg_settings: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(pg_settings)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


NodeFactory = Callable[..., Awaitable[tuple[PostgresBus, Received]]]


@pytest.fixture
async def node(pg_settings: Settings, sessions: Sessions) -> AsyncIterator[NodeFactory]:
    """Start a listening bus for a node id (closed at the end of the test)."""
    buses: list[PostgresBus] = []

    async def start(node_id: str, connect: Connect | None = None) -> tuple[PostgresBus, Received]:
        received = Received()
        bus = PostgresBus(
            node_id,
            sessions,
            connect or asyncpg_connect(listener_dsn(pg_settings)),
            received.on_message,
            received.on_resync,
            heartbeat=0.2,
            backoff=(0.05, 0.4),
        )
        buses.append(bus)
        await bus.start()
        return bus, received

    yield start
    for bus in buses:
        await bus.close()


async def test_an_addressed_message_reaches_its_node_only(node: NodeFactory) -> None:
    a, at_a = await node("node-a")
    b, at_b = await node("node-b")
    c, at_c = await node("node-c")
    assert a.listening.is_set() and b.listening.is_set() and c.listening.is_set()

    await a.send("end", {"stream_id": "s1", "reason": "disabled"}, to="node-b")
    await eventually(lambda: at_b.messages, message=lambda: f"node-b got {at_b.messages}")
    assert at_b.messages == [
        Message("end", {"stream_id": "s1", "reason": "disabled"}, "node-a", "node-b")
    ]

    # Notifications arrive in commit order: had node-a or node-c been handed the first
    # message, it would be there before these markers.
    await b.send("marker", {}, to="node-a")
    await b.send("marker", {}, to="node-c")
    await eventually(lambda: at_a.messages and at_c.messages)
    assert at_a.kinds() == ["marker"] and at_c.kinds() == ["marker"]
    assert at_b.kinds() == ["end"]


async def test_a_broadcast_reaches_every_other_node(node: NodeFactory) -> None:
    a, at_a = await node("node-a")
    _, at_b = await node("node-b")
    c, at_c = await node("node-c")

    await a.send("restream_changed", {"stream_id": "s2"})
    await eventually(lambda: at_b.messages and at_c.messages)
    assert (
        at_b.messages
        == at_c.messages
        == [Message("restream_changed", {"stream_id": "s2"}, "node-a", None)]
    )
    await c.send("marker", {}, to="node-a")
    await eventually(lambda: at_a.messages)
    assert at_a.kinds() == ["marker"]  # not its own broadcast


async def test_a_message_to_itself_is_delivered_without_the_database(node: NodeFactory) -> None:
    a, at_a = await node("node-a")
    await a.send("release", {"stream_id": "s3", "requested_by": "node-a"}, to="node-a")
    await eventually(lambda: at_a.messages)
    assert at_a.messages[0].body == {"stream_id": "s3", "requested_by": "node-a"}


async def test_a_killed_listening_connection_is_reopened_and_resynced(
    node: NodeFactory, pg_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = await node("node-a")
    b, at_b = await node("node-b")
    first_pid = b.backend_pid
    assert first_pid is not None and b.listens == 1 and at_b.resyncs == 0

    caplog.set_level(logging.INFO, logger="api.cluster.bus")
    admin = await asyncpg.connect(listener_dsn(pg_settings))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first_pid)
    finally:
        await admin.close()

    await eventually(lambda: b.listens == 2 and at_b.resyncs == 1, message="no resync")
    assert b.listening.is_set() and b.backend_pid != first_pid
    await a.send("end", {"stream_id": "s4", "reason": "completed"}, to="node-b")
    await eventually(lambda: at_b.messages, message="nothing received after the reconnect")
    assert at_b.kinds() == ["end"]

    lost = [r for r in caplog.records if "connection lost" in r.getMessage()]
    recovered = [r for r in caplog.records if "listening again" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING
    assert len(recovered) == 1


class FreezingProxy:
    """A TCP proxy to PostgreSQL whose open connections can be frozen: what either side sends
    is swallowed, and neither side sees the connection close (a network that went silent)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._frozen: set[asyncio.StreamWriter] = set()
        self._open: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._server.close()
        for writer in self._open:
            writer.close()
        await self._server.wait_closed()

    def freeze(self) -> None:
        """Freeze every connection open now (later ones are not)."""
        self._frozen |= self._open

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._open |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    if writer not in self._frozen:
                        sink.write(data)
                        await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_a_connection_that_went_silent_fails_its_heartbeat_and_is_replaced(
    node: NodeFactory, pg_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(listener_dsn(pg_settings))
    async with FreezingProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
        a, _ = await node("node-a")
        b, at_b = await node("node-b", asyncpg_connect(proxied))
        assert b.listening.is_set()

        proxy.freeze()  # no answer to the heartbeat, and no close either

        await eventually(lambda: b.listens == 2 and at_b.resyncs == 1, message="not replaced")
        await a.send("end", {"stream_id": "s7", "reason": "disabled"}, to="node-b")
        await eventually(lambda: at_b.messages, message="nothing received after the heartbeat")
    assert "control bus: connection lost (timed out); reconnecting" in caplog.messages


async def test_the_bus_keeps_trying_until_the_database_answers(
    node: NodeFactory, pg_settings: Settings
) -> None:
    real = asyncpg_connect(listener_dsn(pg_settings))
    attempts = 0

    async def refused_twice() -> object:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ConnectionRefusedError(111, "Connection refused")
        return await real()

    a, _ = await node("node-a")
    b, at_b = await node("node-b", refused_twice)
    await eventually(lambda: b.listening.is_set(), message="never listened")
    assert attempts == 3 and b.listens == 1
    await eventually(lambda: at_b.resyncs == 1, message="no resync after the failed attempts")
    await a.send("end", {"stream_id": "s5", "reason": "deleted"}, to="node-b")
    await eventually(lambda: at_b.messages)


async def test_malformed_notifications_are_ignored_and_large_payloads_refused(
    node: NodeFactory, sessions: Sessions
) -> None:
    a, _ = await node("node-a")
    _, at_b = await node("node-b")
    async with sessions() as session, session.begin():
        for payload in ("not json", "[1]", '{"kind": "end", "from": "x", "body": {"a": 1}}'):
            await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})
    with pytest.raises(ValueError, match="too large"):
        await a.send("end", {"stream_id": "x" * 8000}, to="node-b")
    await a.send("marker", {}, to="node-b")
    await eventually(lambda: at_b.messages)
    assert at_b.kinds() == ["marker"]


async def test_the_local_bus_delivers_to_its_own_node_only() -> None:
    received = Received()
    bus = LocalBus("solo", received.on_message, received.on_resync)
    await bus.start()
    try:
        await bus.send("end", {"stream_id": "s6", "reason": "disabled"}, to="another")
        await bus.send("restream_changed", {"stream_id": "s6"})
        await bus.send("release", {"stream_id": "s6", "requested_by": "solo"}, to="solo")
        await eventually(lambda: received.messages)
        assert received.kinds() == ["release"]
        assert not bus.shared
    finally:
        await bus.close()
