"""Admission races: a publish whose key check is done but which is not yet registered, meeting
another publish with the same key, a key reset or a deletion.

The whole app runs on loopback with its real database; publishers are raw RTMP sockets. The
interleavings are driven, not hoped for: the app's publish authorizer is wrapped in a
:class:`~tests.fakes.GatedAuthorizer` that holds a key check's answer until the test releases
it. Whatever the order, after the operator's call returns no publisher admitted under the old
key or state may stay connected, and at most one publisher per stream is ever live.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from api.keys import AUTHORIZER, METRICS
from tests.e2e.conftest import LiveServer, e2e_settings, free_port, start_live_server
from tests.fakes import GatedAuthorizer
from tests.polling import eventually
from tests.rtmp_client import RawPublisher

pytestmark = pytest.mark.e2e

PUBLISH_START = ["NetStream.Publish.Start"]
SWEEP_SECONDS = 3600.0
"""The periodic deletion sweep ends a deleted stream's leftover publisher on its own, seconds
later; these tests turn it (nearly) off to see what the admission itself leaves."""
SETTLE_SECONDS = 10.0
"""How long a test waits for the server to close a publisher it must close."""


@pytest.fixture
async def gated(
    tmp_path: Path, sqlite_url: str
) -> AsyncIterator[tuple[LiveServer, GatedAuthorizer]]:
    """The app with its publish authorizer wrapped in a :class:`GatedAuthorizer`."""
    gate = GatedAuthorizer()

    async def gate_publishes(app: web.Application) -> AsyncIterator[None]:
        gate.inner = app[AUTHORIZER]
        app[AUTHORIZER] = gate
        yield

    def prepare(app: web.Application) -> None:
        app.cleanup_ctx.insert(1, gate_publishes)  # after the database, before the media

    port = free_port()
    settings = e2e_settings(tmp_path, sqlite_url, port, deletion_check_seconds=SWEEP_SECONDS)
    server, live = await start_live_server(settings, port, prepare=prepare)
    try:
        yield live, gate
    finally:
        await server.close()


class Watched:
    """A raw publisher whose connection is read until the server closes it."""

    def __init__(self, publisher: RawPublisher, codes: list[str]) -> None:
        self.publisher = publisher
        self.codes = codes
        self._closed = asyncio.create_task(publisher.closed_by_server(timeout=60))
        host, port = publisher.writer.get_extra_info("sockname")[:2]
        self.address = f"{host}:{port}"

    @property
    def closed(self) -> bool:
        """The server closed the connection."""
        return self._closed.done() and self._closed.result()

    @property
    def publishing(self) -> bool:
        """The publish was accepted and the connection is still open."""
        return self.codes == PUBLISH_START and not self.closed

    async def stop(self) -> None:
        self.publisher.close()
        self._closed.cancel()
        await asyncio.gather(self._closed, return_exceptions=True)


@pytest.fixture
async def watched() -> AsyncIterator[list[Watched]]:
    """Raw publishers of a test; closed at its end."""
    started: list[Watched] = []
    yield started
    for publisher in started:
        await publisher.stop()


async def start(live: LiveServer, key: str, into: list[Watched]) -> Watched:
    publisher, codes = await RawPublisher.start(live.rtmp_port, key)
    watch = Watched(publisher, codes)
    into.append(watch)
    return watch


async def call(live: LiveServer, method: str, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{live.http_url}{path}", headers=live.headers) as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


def nothing_live(live: LiveServer, stream_id: str) -> bool:
    """No publisher on the node, and nothing live of ``stream_id`` (read from ``/metrics``)."""
    text = live.app[METRICS].render().decode()
    return "liverelay_live_streams 0.0" in text and f'stream="{stream_id}"' not in text


async def test_two_publishes_with_one_key_at_once_leave_exactly_one_publishing(
    gated: tuple[LiveServer, GatedAuthorizer], watched: list[Watched]
) -> None:
    live, gate = gated
    stream = await live.create_stream()
    holds = [gate.hold_next(), gate.hold_next()]
    starting = [asyncio.create_task(start(live, stream["streamKey"], watched)) for _ in holds]
    for hold in holds:
        await hold.checked.wait()
    for hold in holds:  # both keys checked, neither registered: let both go at once
        hold.release()
    publishers = await asyncio.gather(*starting)

    await eventually(lambda: sum(p.publishing for p in publishers) <= 1, within=SETTLE_SECONDS)
    [survivor] = [p for p in publishers if p.publishing]
    body = await call(live, "GET", f"/v1/livestreams/{stream['id']}")
    assert body["status"] == "live"
    assert body["currentSession"]["clientAddress"] == survivor.address


async def test_a_key_reset_during_a_publish_key_check_leaves_no_publisher(
    gated: tuple[LiveServer, GatedAuthorizer], watched: list[Watched]
) -> None:
    live, gate = gated
    stream = await live.create_stream()
    hold = gate.hold_next()
    starting = asyncio.create_task(start(live, stream["streamKey"], watched))
    await hold.checked.wait()  # the old key was valid when checked

    reset = await call(live, "POST", f"/v1/livestreams/{stream['id']}/reset-stream-key")
    assert reset["status"] == "idle"
    hold.release()
    publisher = await starting

    await eventually(lambda: publisher.closed, within=SETTLE_SECONDS)
    await eventually(lambda: nothing_live(live, stream["id"]), within=SETTLE_SECONDS)
    body = await call(live, "GET", f"/v1/livestreams/{stream['id']}")
    assert (body["status"], body["currentSession"]) == ("idle", None)


async def test_a_delete_during_a_reconnect_leaves_nothing_live(
    gated: tuple[LiveServer, GatedAuthorizer], watched: list[Watched]
) -> None:
    live, gate = gated
    stream = await live.create_stream()
    first = await start(live, stream["streamKey"], watched)
    assert first.codes == PUBLISH_START
    first.publisher.writer.transport.abort()  # dropped: the session waits in its window
    await eventually(lambda: "liverelay_live_streams 0.0" in live.app[METRICS].render().decode())
    session = (await call(live, "GET", f"/v1/livestreams/{stream['id']}"))["currentSession"]
    assert session["reconnecting"] is True

    hold = gate.hold_next()
    starting = asyncio.create_task(start(live, stream["streamKey"], watched))
    await hold.checked.wait()  # the reconnect's key was valid when checked
    await call(live, "DELETE", f"/v1/livestreams/{stream['id']}")
    hold.release()
    second = await starting

    await eventually(lambda: second.closed, within=SETTLE_SECONDS)
    await eventually(lambda: nothing_live(live, stream["id"]), within=SETTLE_SECONDS)


ROUNDS = 3
"""Rounds of the unscripted race (each one a new stream)."""


async def test_two_publishers_at_the_same_instant_then_a_reset_ends_everything(
    live_server: LiveServer, watched: list[Watched]
) -> None:
    for _ in range(ROUNDS):
        stream = await live_server.create_stream()
        key = stream["streamKey"]
        publishers = await asyncio.gather(
            start(live_server, key, watched), start(live_server, key, watched)
        )
        assert any(p.codes == PUBLISH_START for p in publishers)

        await call(live_server, "POST", f"/v1/livestreams/{stream['id']}/reset-stream-key")
        await eventually(lambda: all(p.closed for p in publishers), within=SETTLE_SECONDS)  # noqa: B023
        await eventually(lambda: nothing_live(live_server, stream["id"]), within=SETTLE_SECONDS)  # noqa: B023
