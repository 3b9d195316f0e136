"""The control bus between nodes: small JSON messages addressed to one node (or to every other
node), carried by PostgreSQL ``LISTEN``/``NOTIFY`` on the channel :data:`CHANNEL`.

A node listens on a **dedicated** asyncpg connection, not one of the engine's pool (a pooled
connection is handed out and reset; a listener must stay put). A heartbeat (``SELECT 1`` with a
timeout) runs on it every few seconds; when it fails or the server closes the connection, the
bus connects again with backoff, listens again and then asks the receiver to **resync**:
notifications sent while it was not listening are lost, so the receiver re-reads the state it
acts on. Sending is ``pg_notify()`` through the engine, committed at once.

Payloads are ids, never bodies: PostgreSQL refuses a payload of 8000 bytes or more.

On SQLite there is one node: :class:`LocalBus` has the same interface, delivers what a node
addresses to itself and has nobody else to reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.database import describe_error
from config import Settings
from ingest.ratelimit import WarningRateLimiter
from workers.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL = "liverelay_control"
MAX_PAYLOAD_BYTES = 7999
"""The largest ``NOTIFY`` payload PostgreSQL takes (it must be shorter than 8000 bytes)."""
HEARTBEAT_SECONDS = 5.0
"""Period of the listening connection's ``SELECT 1``, and how long one may take."""
BACKOFF_SECONDS = (0.5, 10.0)
"""First and longest wait between two attempts to connect again."""
CONNECT_SECONDS = 5.0
"""Bound of one connection attempt (and of the wait for the first ``LISTEN`` at start)."""
LOG_EVERY_SECONDS = 60.0
"""At most one warning of a lost connection, and one note of its recovery, per this period."""


@dataclass(frozen=True)
class Message:
    """A control message: ``kind`` and a flat ``body`` of strings, from node ``sender`` to node
    ``to`` (``None``: every node but the sender)."""

    kind: str
    body: Mapping[str, str]
    sender: str
    to: str | None = None

    def encode(self) -> str:
        return json.dumps(
            {"kind": self.kind, "body": dict(self.body), "from": self.sender, "to": self.to},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, payload: str) -> Message:
        """The message of ``payload``; :class:`ValueError` if it is not one."""
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        kind, body, sender = data.get("kind"), data.get("body"), data.get("from")
        to = data.get("to")
        if not isinstance(kind, str) or not isinstance(sender, str):
            raise ValueError("kind and from must be strings")
        if not (to is None or isinstance(to, str)):
            raise ValueError("to must be a string or null")
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            raise ValueError("body must be an object of strings")
        return cls(kind, body, sender, to)


OnMessage = Callable[[Message], Awaitable[None]]
OnResync = Callable[[], Awaitable[None]]


class Bus(Protocol):
    """What a node sends and receives control messages through."""

    node_id: str
    shared: bool
    """Whether other nodes can be reached (``False``: the single node of SQLite)."""

    async def start(self) -> None: ...

    async def send(self, kind: str, body: Mapping[str, str], to: str | None = None) -> None:
        """Send to node ``to`` (``None``: every other node); a failure raises."""
        ...

    async def close(self) -> None: ...


class _Inbox:
    """Hands each received message (or resync) to the handler in a task of its own, at once:
    ending one stream, which waits for its outputs to flush, holds up no other message. The live
    paths order what concerns one stream; every handler only re-reads and applies the current
    state, so two of them meeting on a stream do no harm."""

    def __init__(self, on_message: OnMessage, on_resync: OnResync) -> None:
        self._on_message = on_message
        self._on_resync = on_resync
        self._tasks: set[asyncio.Task[None]] = set()

    def put(self, message: Message | None) -> None:
        """Handle ``message`` (``None``: a resync)."""
        task = asyncio.get_running_loop().create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop the handlers still running."""
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, message: Message | None) -> None:
        try:
            if message is None:
                await self._on_resync()
            else:
                await self._on_message(message)
        except Exception:
            what = "resync" if message is None else f"{message.kind} message"
            log.exception("control bus: handling a %s failed", what)


class LocalBus:
    """The bus of a node alone on its database (SQLite): it delivers what the node sends to
    itself; there is no other node to reach."""

    shared = False

    def __init__(self, node_id: str, on_message: OnMessage, on_resync: OnResync) -> None:
        self.node_id = node_id
        self._inbox = _Inbox(on_message, on_resync)

    async def start(self) -> None:
        """Nothing to start: there is no connection."""

    async def send(self, kind: str, body: Mapping[str, str], to: str | None = None) -> None:
        if to == self.node_id:
            self._inbox.put(Message(kind, body, self.node_id, to))
        elif to is not None:
            log.debug("control bus: no node %s on this database; %s not sent", to, kind)

    async def close(self) -> None:
        await self._inbox.close()


Connect = Callable[[], Awaitable[Any]]
"""Opens the listening connection (an :class:`asyncpg.Connection`)."""


def listener_dsn(settings: Settings) -> str:
    """The database URL as asyncpg takes it (no SQLAlchemy driver name)."""
    url = make_url(settings.database_url_value).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def asyncpg_connect(dsn: str, timeout: float = CONNECT_SECONDS) -> Connect:
    async def connect() -> Any:
        return await asyncpg.connect(
            dsn, timeout=timeout, server_settings={"application_name": "liverelay-control-bus"}
        )

    return connect


class PostgresBus:
    """The bus on PostgreSQL: ``NOTIFY`` through the engine, ``LISTEN`` on a connection of its
    own, kept alive by a heartbeat and opened again (then a resync) whenever it is lost."""

    shared = True

    def __init__(
        self,
        node_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        connect: Connect,
        on_message: OnMessage,
        on_resync: OnResync,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        backoff: tuple[float, float] = BACKOFF_SECONDS,
        log_every: float = LOG_EVERY_SECONDS,
    ) -> None:
        self.node_id = node_id
        self._sessionmaker = sessionmaker
        self._connect = connect
        self._inbox = _Inbox(on_message, on_resync)
        self._heartbeat = heartbeat
        self._backoff = backoff
        self._warnings = WarningRateLimiter(log_every, clock=time.monotonic)
        self._runner: asyncio.Task[None] | None = None
        self._down = False
        self.listening = asyncio.Event()
        """Set while the bus listens (cleared when the connection is lost)."""
        self.backend_pid: int | None = None
        """The server process of the listening connection (the last one)."""
        self.listens = 0
        """How many times the bus began listening (1 + the reconnections)."""

    async def start(self) -> None:
        """Listen in the background; return once listening, or after :data:`CONNECT_SECONDS`
        (the bus keeps trying: the database may be away)."""
        self._runner = asyncio.create_task(self._run(), name="control-bus-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_SECONDS):
                await self.listening.wait()

    async def send(self, kind: str, body: Mapping[str, str], to: str | None = None) -> None:
        message = Message(kind, body, self.node_id, to)
        if to == self.node_id:
            self._inbox.put(message)
            return
        payload = message.encode()
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"control message {kind} too large for NOTIFY: {len(payload)} bytes")
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": payload},
            )

    async def close(self) -> None:
        await cancel_and_wait(self._runner)
        self._runner = None
        await self._inbox.close()

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = Message.decode(payload)
        except ValueError as exc:
            log.warning("control bus: ignored a malformed message (%s)", exc)
            return
        if message.to == self.node_id or (message.to is None and message.sender != self.node_id):
            self._inbox.put(message)

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            reason = await self._listen_until_lost()
            if reason is None:
                delay = self._backoff[0]  # it listened: the next attempt comes soon
            if not self._down:
                self._down = True
                self._note("lost", logging.WARNING, "cannot listen (%s); retrying", reason)
            elif reason is not None:
                log.debug("control bus: still cannot listen (%s)", reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _listen_until_lost(self) -> str | None:
        """Connect, listen and heartbeat until the connection is lost; ``None`` if it was
        listening (the reason is then logged), else why it could not connect."""
        connection = None
        try:
            connection = await self._connect()
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _c: lost.set())
            await connection.add_listener(CHANNEL, self._notified)
        except Exception as exc:
            if connection is not None:
                connection.terminate()
            return describe_error(exc)
        self.backend_pid = connection.get_server_pid()
        self.listens += 1
        self.listening.set()
        if self.listens > 1 or self._down:
            self._inbox.put(None)  # what was sent while not listening is lost: re-read
        if self._down:
            self._down = False
            self._note("recovered", logging.INFO, "listening again; resyncing")
        try:
            await self._watch(connection, lost)
            why = "closed by the server"
        except Exception as exc:
            why = describe_error(exc)
        finally:
            self.listening.clear()
            connection.terminate()
        self._down = True
        self._note("lost", logging.WARNING, "connection lost (%s); reconnecting", why)
        return None

    async def _watch(self, connection: Any, lost: asyncio.Event) -> None:
        """Return when ``connection`` is closed; raise when its heartbeat fails."""
        while not lost.is_set() and not connection.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await lost.wait()
                    return
            async with asyncio.timeout(self._heartbeat):
                await connection.fetchval("SELECT 1")

    def _note(self, key: str, level: int, message: str, *args: object) -> None:
        held_back = self._warnings.allow(key)
        if held_back is None:
            log.debug("control bus: " + message, *args)
            return
        more = f" ({held_back} more since the last)" if held_back else ""
        log.log(level, "control bus: " + message + more, *args)
