"""Helpers of the webhook tests: a real receiver on a loopback port, apps with a fast delivery
policy, and the signature check from docs/webhooks.md (run from the document itself, so the
snippet readers copy is the one tested)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient, AiohttpServer

from api.app import create_app
from api.keys import DB_SESSIONMAKER, WEBHOOK_DISPATCHER
from api.webhooks import outbox
from api.webhooks.dispatcher import DeliveryPolicy
from config import Settings
from tests.api.conftest import AccountCredentials

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
FAST = DeliveryPolicy(
    poll_interval=0.05,
    timeout=1.0,
    backoff_base=0.05,
    backoff_cap=0.2,
    jitter=0.0,
    shutdown_grace=0.1,
)
"""Retries after 50 ms instead of 5 s; a POST gives up after 1 s."""


@dataclasses.dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: Mapping[str, str]
    body: bytes
    at: float
    """``time.perf_counter()`` when it arrived."""


class Receiver:
    """Webhook endpoints: ``/ok`` answers 204, ``/flaky`` 500 once then 200, ``/fail`` always
    500, ``/hang`` answers only when :attr:`release` is set."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.release = asyncio.Event()
        self.base = ""
        self._arrivals: asyncio.Queue[Received] = asyncio.Queue()
        self._flaky_failures = 1

    def app(self) -> web.Application:
        """The receiving app."""
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        return app

    def url(self, name: str) -> str:
        """URL of endpoint ``name``."""
        return f"{self.base}/{name}"

    async def next(self, timeout: float = 10.0) -> Received:
        """The next request to arrive."""
        return await asyncio.wait_for(self._arrivals.get(), timeout)

    def on(self, name: str) -> list[Received]:
        """What endpoint ``name`` received so far."""
        return [r for r in self.received if r.path == f"/{name}"]

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.path, dict(request.headers), await request.read(), time.perf_counter()
        )
        self.received.append(received)
        self._arrivals.put_nowait(received)
        return await self._answer(request.match_info["name"])

    async def _answer(self, name: str) -> web.Response:
        if name == "hang":
            await self.release.wait()
        if name == "fail" or (name == "flaky" and self._flaky_failures > 0):
            self._flaky_failures -= name == "flaky"
            return web.Response(status=500, text="receiver broke")
        return web.Response(status=200 if name == "flaky" else 204)


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> AsyncIterator[Receiver]:
    """A :class:`Receiver` listening on 127.0.0.1."""
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    receiver.base = str(server.make_url("")).rstrip("/")
    yield receiver
    receiver.release.set()


class Blackhole:
    """A loopback TCP server that accepts connections, reads what arrives and never answers:
    each webhook POST to it waits for the sender's timeout. Counts connections open and closed;
    holds at most :attr:`LIMIT` at once (more are closed at once)."""

    LIMIT = 200

    def __init__(self) -> None:
        self.accepted = 0
        """Connections accepted so far."""
        self.closed = 0
        """Of those, connections the client closed (gave up on)."""
        self.url = ""
        self._open: set[asyncio.BaseTransport] = set()

    @property
    def waiting(self) -> int:
        """Connections open now (requests in flight, never to be answered)."""
        return len(self._open)

    def accept(self, transport: asyncio.BaseTransport) -> None:
        """Count a new connection (closing it at once beyond :attr:`LIMIT`)."""
        if len(self._open) >= self.LIMIT:
            transport.close()
            return
        self.accepted += 1
        self._open.add(transport)

    def lost(self, transport: asyncio.BaseTransport) -> None:
        """Count a connection the client closed."""
        if transport in self._open:
            self._open.discard(transport)
            self.closed += 1

    def close_all(self) -> None:
        """Close every connection still open (at the end of the test)."""
        for transport in list(self._open):
            transport.close()
        self._open.clear()


class _BlackholeConnection(asyncio.Protocol):
    """One connection to a :class:`Blackhole`: discards what it reads (the default
    ``data_received``), closes on the client's EOF and tells the hole when it is gone."""

    def __init__(self, hole: Blackhole) -> None:
        self._hole = hole
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._hole.accept(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._hole.lost(self._transport)


@pytest.fixture
async def blackhole() -> AsyncIterator[Blackhole]:
    """A :class:`Blackhole` on 127.0.0.1, closed with its connections at the end."""
    hole = Blackhole()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _BlackholeConnection(hole), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hole.url = f"http://127.0.0.1:{port}"
    try:
        yield hole
    finally:
        server.close()
        hole.close_all()
        await server.wait_closed()


@pytest.fixture
def hook_settings(app_settings: Settings) -> Settings:
    """The test settings, with webhooks to loopback allowed (the receiver is on 127.0.0.1)."""
    return dataclasses.replace(app_settings, allow_private_targets=True)


StartApp = Callable[..., Awaitable[TestClient]]
"""What the :func:`start_app` fixture gives: start an app with a delivery policy."""


@pytest.fixture
def start_app(aiohttp_client: AiohttpClient, hook_settings: Settings) -> StartApp:
    """Start an app on the test's database with a delivery policy (:data:`FAST` by default)."""

    async def start(policy: DeliveryPolicy = FAST) -> TestClient:
        return await aiohttp_client(create_app(hook_settings, webhook_policy=policy))

    return start


@pytest.fixture
async def hook_client(start_app: Callable[..., Awaitable[TestClient]]) -> TestClient:
    """A started app that delivers with :data:`FAST`."""
    return await start_app()


async def stop_dispatcher(client: TestClient) -> None:
    """Stop ``client``'s app from sending (its outbox is then only written)."""
    await client.app[WEBHOOK_DISPATCHER].close()


async def create_webhook(
    client: TestClient, account: AccountCredentials, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    """``POST /v1/webhooks``, asserting 201."""
    body = {"url": url, "events": events or ["*"]}
    response = await client.post("/v1/webhooks", json=body, headers=account.headers)
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def queue_event(
    client: TestClient,
    account_id: str,
    event_type: str = "livestream.started",
    data: Mapping[str, Any] | None = None,
) -> str | None:
    """Queue an event through the outbox of ``client``'s app; returns its id."""
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        return await outbox.enqueue(
            session, account_id=account_id, event_type=event_type, data=data or {"n": 1}
        )


async def deliveries(
    client: TestClient, account: AccountCredentials, webhook_id: str
) -> list[dict[str, Any]]:
    """``GET /v1/webhooks/{id}/deliveries`` (first page of 100)."""
    response = await client.get(
        f"/v1/webhooks/{webhook_id}/deliveries?perPage=100", headers=account.headers
    )
    assert response.status == 200, await response.text()
    return list((await response.json())["data"])


def docs_verifier() -> Callable[..., bool]:
    """``verify_signature`` from the first Python block of docs/webhooks.md."""
    block = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert block is not None, "docs/webhooks.md has no Python snippet"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), str(DOCS), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify_signature"]
    return verify


SECRET_KEYS = ("streamKey", "upstreamUrl", "secureUpstreamUrl")
"""What event payloads leave out of a stream: the fields that hold its publish key."""


def keyless(stream: Mapping[str, Any]) -> dict[str, Any]:
    """``stream`` as the API returns it, without what event payloads leave out: its
    ``streamKey``, ``upstreamUrl`` and ``secureUpstreamUrl``, and its restream targets'
    ``streamKey``."""
    targets = [{k: v for k, v in t.items() if k != "streamKey"} for t in stream["restream"]]
    kept = {k: v for k, v in stream.items() if k not in SECRET_KEYS}
    return {**kept, "restream": targets}
