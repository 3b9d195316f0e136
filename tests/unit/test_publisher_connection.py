"""The publish rules of one RTMP connection, without sockets: the sans-IO connection's events go
in as the transport hands them on, and the tests look at what the rules ask of the live path
(:class:`~tests.fakes.StubAdmission`) and what they queue for the peer."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.limits import CloseReason
from ingest.live import END_MESSAGES
from ingest.publisher import EndConnection, PublisherConnection
from ingest.rtmp.events import PublishRequested
from tests.fakes import StubAdmission, StubPath
from tests.protocol.helpers import (
    VIDEO,
    ServerOutput,
    command,
    connect_command,
    handshaken,
    message_chunks,
    statuses,
)

KEY = "k" * 20
STREAM = "5" * 24
AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"


class Peer:
    """One connection's publish rules, fed the events of a handshaken sans-IO connection the
    way the transport and the connection's task feed them."""

    def __init__(self, admission: StubAdmission) -> None:
        self.conn = handshaken()
        self.admission = admission
        self.closes = 0
        self.publisher = PublisherConnection(
            self.conn,
            client_address="127.0.0.1:5000",
            admission=admission,
            close_transport=self._close,
        )
        self._output = ServerOutput()

    def _close(self) -> None:
        self.closes += 1

    async def send(self, data: bytes) -> None:
        """The peer sent ``data``: events that need no waiting are handled at once, the others
        as the connection's task would."""
        for event in self.conn.receive_data(data):
            if not self.publisher.handle_now(event):
                await self.publisher.handle(event)

    def statuses(self) -> list[dict[str, Any]]:
        """The statuses queued for the peer since the last call."""
        return statuses(self._output.feed(self.conn.data_to_send()))

    async def publish(self, key: str = KEY) -> None:
        """connect, createStream, publish with ``key``."""
        await self.send(connect_command())
        await self.send(command("createStream", 2.0, None))
        self.statuses()
        await self.send(command("publish", 3.0, None, key, "live", stream_id=1, csid=8))

    @property
    def path(self) -> StubPath:
        [path] = self.admission.paths
        return path


@pytest.fixture
def peer() -> Peer:
    return Peer(StubAdmission({KEY: STREAM}))


async def test_an_accepted_publish_feeds_its_path(peer: Peer) -> None:
    await peer.publish()
    assert peer.admission.asked == [KEY]
    assert peer.path.publisher is peer.publisher
    assert [s["code"] for s in peer.statuses()] == ["NetStream.Publish.Start"]
    assert peer.publisher.publishing and not peer.publisher.ended

    await peer.send(message_chunks(0, 6, AVC_HEADER, type_id=VIDEO, stream_id=1))
    assert peer.path.hub.bytes_in == len(AVC_HEADER)
    assert peer.closes == 0 and peer.path.departures == []


async def test_a_refused_key_is_told_and_ends_the_connection(peer: Peer) -> None:
    with pytest.raises(EndConnection, match="unknown stream key") as ended:
        await peer.publish("wrong-key")
    assert ended.value.reason is CloseReason.BAD_KEY
    [status] = peer.statuses()
    assert status["level"] == "error"
    assert status["code"] == "NetStream.Publish.BadName"
    assert status["description"] == "unknown stream key"
    assert peer.admission.paths == [] and not peer.publisher.publishing


async def test_an_admission_that_fails_asks_the_publisher_to_try_again(peer: Peer) -> None:
    peer.admission.error = ConnectionRefusedError("database down")
    with pytest.raises(EndConnection) as ended:
        await peer.publish()
    assert ended.value.reason is CloseReason.AUTH_UNAVAILABLE
    [status] = peer.statuses()
    assert status["code"] == "NetStream.Publish.Failed"
    assert "database" not in status["description"]  # the cause is logged, not told


async def test_only_the_live_application_is_served(peer: Peer) -> None:
    with pytest.raises(EndConnection) as ended:
        await peer.send(connect_command("some-key-by-mistake"))
    assert ended.value.reason is CloseReason.BAD_APP
    assert "some-key" not in str(ended.value)  # an encoder may put its key in the app name
    assert peer.admission.asked == []


async def test_play_is_refused(peer: Peer) -> None:
    await peer.send(connect_command())
    await peer.send(command("createStream", 2.0, None))
    peer.statuses()
    with pytest.raises(EndConnection) as ended:
        await peer.send(command("play", 3.0, None, KEY, stream_id=1, csid=8))
    assert ended.value.reason is CloseReason.PLAY_REFUSED
    assert [s["code"] for s in peer.statuses()] == ["NetStream.Play.Failed"]


async def test_a_publish_waits_for_the_task(peer: Peer) -> None:
    await peer.send(connect_command())
    await peer.send(command("createStream", 2.0, None))
    [event] = peer.conn.receive_data(
        command("publish", 3.0, None, KEY, "live", stream_id=1, csid=8)
    )
    assert isinstance(event, PublishRequested)
    assert not peer.publisher.handle_now(event)
    assert peer.admission.asked == []  # nothing asked in the read callback


async def test_an_unpublish_leaves_the_path_cleanly_once(peer: Peer) -> None:
    await peer.publish()
    await peer.send(command("FCUnpublish", 4.0, None, KEY))
    await peer.send(command("deleteStream", 5.0, None, 1.0))
    [departure] = peer.path.departures
    assert departure.publisher is peer.publisher
    assert departure.clean and departure.reason == "publisher_left"
    assert peer.publisher.ended and not peer.publisher.publishing


async def test_a_dropped_connection_leaves_the_path_for_a_reconnect(peer: Peer) -> None:
    await peer.publish()
    await peer.publisher.finish(clean=False, reason="timed_out", detail="no data")
    await peer.publisher.finish(clean=False, reason="publisher_left", detail="closed")
    [departure] = peer.path.departures
    assert not departure.clean and departure.reason == "timed_out"


async def test_the_path_disconnecting_tells_the_peer_why_and_closes(peer: Peer) -> None:
    await peer.publish()
    peer.statuses()
    peer.path.publisher.disconnect("deleted")
    [status] = peer.statuses()
    assert status["code"] == "NetStream.Unpublish.Success"
    assert status["description"] == END_MESSAGES["deleted"]
    assert peer.closes == 1 and peer.publisher.ended
    await peer.publisher.finish(clean=False, reason="publisher_left", detail="closed")
    assert peer.path.departures == []  # no longer the path's: it does not leave it


async def test_media_the_hub_refuses_ends_the_connection(peer: Peer) -> None:
    await peer.publish()
    header = b"\x17\x00\x00\x00\x00" + bytes(70_000)  # a sequence header over 64 KiB
    with pytest.raises(EndConnection) as ended:
        await peer.send(message_chunks(0, 6, header, type_id=VIDEO, stream_id=1, chunk_size=128))
    assert ended.value.reason is CloseReason.PROTOCOL_ERROR
    assert peer.path.hub.bytes_in == 0
