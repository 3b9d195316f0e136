"""Live paths: restream targets change while live, only where they changed; admission is one
step per stream, whatever runs between a key check and its answer.

The "ffmpeg" here is a small executable fixture that prints ffmpeg-style progress and reads its
stdin to EOF, so outputs go live without a network. Stream keys are checked by a table of our
own (:class:`~tests.fakes.KeyTable`), held when a test needs it by a
:class:`~tests.fakes.GatedAuthorizer`.
"""

from __future__ import annotations

import asyncio
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config import Settings
from ingest.authorizer import PublishDenied, PublishGrant, RestreamTarget
from ingest.flv import TAG_AUDIO, TAG_VIDEO
from ingest.live import EndReason, LiveElsewhere
from tests.fakes import FakeOwnership, GatedAuthorizer, KeyTable
from tests.polling import eventually
from workers.events import NoStreamEvents, SessionInfo
from workers.live_path import LivePath
from workers.live_paths import LivePaths
from workers.path_outputs import PathOutputs
from workers.supervisor import OutputState

FIXTURES = Path(__file__).parent / "fixtures"
STREAM = "5" * 24
META = {"videocodecid": 7.0, "audiocodecid": 10.0}


def fake_ffmpeg(directory: Path) -> str:
    script = directory / "ffmpeg"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {FIXTURES / 'progress.py'} advance\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def make_ready(path: LivePath) -> None:
    hub = path.hub
    hub.publish_metadata(b"\x02\x00\x0aonMetaData\x03\x00\x00\x09", META)
    hub.publish_media(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64")
    hub.publish_media(TAG_AUDIO, 0, b"\xaf\x00\x12\x10")


def rt(target_id: str, key: str) -> RestreamTarget:
    # A public address: the output resolves names before it starts ffmpeg, and there is no DNS.
    return RestreamTarget(target_id, f"rtmp://93.184.216.34/app/{key}")


class FakePublisher:
    """A publishing connection as a path sees it: it records why it was let go."""

    def __init__(self, client_address: str = "127.0.0.1:5000") -> None:
        self.client_address = client_address
        self.ended: list[EndReason] = []

    def disconnect(self, reason: EndReason) -> None:
        self.ended.append(reason)


@pytest.fixture
def keys() -> KeyTable:
    return KeyTable()


@pytest.fixture
def gate(keys: KeyTable) -> GatedAuthorizer:
    return GatedAuthorizer(keys)


@pytest.fixture
async def paths(tmp_path: Path, gate: GatedAuthorizer) -> AsyncIterator[LivePaths]:
    settings = Settings(data_dir=tmp_path, output_backoff_max_seconds=1)
    registry = LivePaths(settings, ffmpeg=fake_ffmpeg(tmp_path), authorizer=gate)
    yield registry
    await registry.close()


async def go_live(paths: LivePaths, keys: KeyTable, grant: PublishGrant) -> LivePath:
    keys.grants["key"] = grant
    return await paths.admit("key", FakePublisher())


def live_ids(outputs: PathOutputs) -> set[str]:
    return {tid for tid, o in outputs.restreams.items() if o.status().state is OutputState.LIVE}


async def test_changing_targets_while_live_touches_only_the_changed_ones(
    paths: LivePaths, keys: KeyTable
) -> None:
    grant = PublishGrant(STREAM, restream=(rt("t1", "k1"), rt("t2", "k2")))
    path = await go_live(paths, keys, grant)
    outputs = path.outputs
    make_ready(path)
    await eventually(lambda: live_ids(outputs) == {"t1", "t2"})
    kept, edited = outputs.restreams["t1"], outputs.restreams["t2"]

    changed = [rt("t1", "k1"), rt("t3", "k3"), rt("t2", "k2-new")]
    assert await paths.update_restream(STREAM, changed)

    assert outputs.restreams["t1"] is kept
    assert outputs.restreams["t2"] is not edited
    await eventually(lambda: live_ids(outputs) == {"t1", "t2", "t3"})
    await eventually(lambda: edited.status().state is OutputState.STOPPED)
    assert kept.status().restarts == 0
    assert outputs.hls.supervisor.status().restarts == 0
    names = [status.name for status, _ in path.output_statuses()]
    assert names == [f"{STREAM}/hls", *(f"{STREAM}/restream:{t}" for t in ("t1", "t3", "t2"))]

    assert await paths.update_restream(STREAM, [])
    assert path.publisher is not None
    await path.leave(path.publisher, clean=True, reason="publisher_left")
    assert {o.status().state for o in (kept, edited)} == {OutputState.STOPPED}
    assert paths.get(STREAM) is None and path.ended.is_set()
    assert not await paths.update_restream(STREAM, [rt("t1", "k1")])


async def test_targets_set_before_the_stream_is_ready_start_with_it(
    paths: LivePaths, keys: KeyTable
) -> None:
    path = await go_live(paths, keys, PublishGrant(STREAM))
    outputs = path.outputs
    assert await paths.update_restream(STREAM, [rt("late", "k")])
    assert dict(outputs.restreams) == {}  # nothing starts before the hub knows the tracks
    make_ready(path)
    await eventually(lambda: live_ids(outputs) == {"late"})
    publisher = path.publisher
    assert publisher is not None
    await path.leave(publisher, clean=True, reason="publisher_left")
    await path.leave(publisher, clean=True, reason="publisher_left")  # once only
    assert path.ended.is_set() and paths.get(STREAM) is None
    assert outputs.recording is None  # not a recorded stream


# -- admission races, driven by a held key check ---------------------------------------------


async def test_two_publishes_with_one_key_at_once_leave_exactly_one_publisher(
    paths: LivePaths, keys: KeyTable, gate: GatedAuthorizer
) -> None:
    keys.grants["key"] = PublishGrant(STREAM)
    holds = [gate.hold_next(), gate.hold_next()]
    publishers = [FakePublisher("198.51.100.1:1000"), FakePublisher("198.51.100.2:2000")]
    admitting = [asyncio.create_task(paths.admit("key", p)) for p in publishers]
    for hold in holds:
        await hold.checked.wait()
    for hold in holds:  # both keys checked, neither admitted: both go on at once
        hold.release()
    admitted = await asyncio.gather(*admitting)

    path = paths.get(STREAM)
    assert path is not None and admitted == [path, path]
    assert [p for p in publishers if not p.ended] == [path.publisher]
    assert [p.ended for p in publishers if p.ended] == [["publisher_left"]]
    assert path.reconnects == 1  # one session, continued by the newer publisher


async def test_a_key_reset_during_a_key_check_turns_the_publish_away(
    paths: LivePaths, keys: KeyTable, gate: GatedAuthorizer
) -> None:
    keys.grants["old"] = PublishGrant(STREAM)
    hold = gate.hold_next()
    admitting = asyncio.create_task(paths.admit("old", FakePublisher()))
    await hold.checked.wait()  # the old key was valid when checked

    keys.grants = {"new": PublishGrant(STREAM)}  # the reset is committed, then the stream ended
    assert not await paths.end(STREAM, "reset")
    hold.release()

    with pytest.raises(PublishDenied, match="unknown stream key"):
        await admitting
    assert paths.get(STREAM) is None
    assert gate.calls == 2  # checked again under the stream's lock


async def test_a_delete_during_a_reconnect_leaves_nothing_live(
    paths: LivePaths, keys: KeyTable, gate: GatedAuthorizer
) -> None:
    path = await go_live(paths, keys, PublishGrant(STREAM, reconnect_window_seconds=600))
    assert path.publisher is not None
    await path.leave(path.publisher, clean=False, reason="publisher_left")
    assert path.reconnecting

    hold = gate.hold_next()
    back = FakePublisher("198.51.100.3:3000")
    admitting = asyncio.create_task(paths.admit("key", back))
    await hold.checked.wait()  # the key was valid when the reconnect checked it
    keys.grants.clear()  # the deletion is committed, then the stream ended
    assert await paths.end(STREAM, "deleted")
    hold.release()

    with pytest.raises(PublishDenied):
        await admitting
    assert paths.get(STREAM) is None and path.ended.is_set()
    assert path.publisher is None and back.ended == []


async def test_an_end_during_an_admission_waits_for_it_then_ends_it(
    paths: LivePaths, keys: KeyTable, gate: GatedAuthorizer
) -> None:
    keys.grants["key"] = PublishGrant(STREAM)
    first_check, second_check = gate.hold_next(), gate.hold_next()
    publisher = FakePublisher("198.51.100.4:4000")
    admitting = asyncio.create_task(paths.admit("key", publisher))
    await first_check.checked.wait()
    assert not await paths.end(STREAM, "completed")  # complete keeps the key: checked again
    first_check.release()
    await second_check.checked.wait()  # the second check runs under the stream's lock
    ending = asyncio.create_task(paths.end(STREAM, "completed"))
    second_check.release()

    path = await admitting
    assert await ending  # it waited for the admission, then ended what was admitted
    assert path.ended.is_set() and paths.get(STREAM) is None
    assert publisher.ended == ["completed"]


async def test_an_orphaned_window_never_ends_the_session_that_replaced_it(
    paths: LivePaths, keys: KeyTable
) -> None:
    path = await go_live(paths, keys, PublishGrant(STREAM, reconnect_window_seconds=600))
    dropped = path.publisher
    assert dropped is not None
    await path.leave(dropped, clean=False, reason="publisher_left")
    back = FakePublisher("198.51.100.5:5000")
    assert await paths.admit("key", back) is path
    assert not path.reconnecting and path.publisher is back
    await path.leave(dropped, clean=True, reason="publisher_left")  # late: no longer its publisher
    assert paths.get(STREAM) is path and not path.ending


# -- a path's own ends ------------------------------------------------------------------------


async def test_the_maximum_duration_ends_the_path_and_disconnects_its_publisher(
    paths: LivePaths, keys: KeyTable
) -> None:
    path = await go_live(paths, keys, PublishGrant(STREAM, max_duration_seconds=0.05))
    publisher = path.publisher
    assert isinstance(publisher, FakePublisher)
    await asyncio.wait_for(path.ended.wait(), 10)
    assert publisher.ended == ["max_duration"]
    assert paths.get(STREAM) is None and path.publisher is None


async def test_a_reconnect_window_running_out_ends_the_path(
    paths: LivePaths, keys: KeyTable
) -> None:
    path = await go_live(paths, keys, PublishGrant(STREAM, reconnect_window_seconds=0.05))
    publisher = path.publisher
    assert isinstance(publisher, FakePublisher)
    await path.leave(publisher, clean=False, reason="timed_out")
    assert path.reconnecting and paths.get(STREAM) is path
    await asyncio.wait_for(path.ended.wait(), 10)
    assert paths.get(STREAM) is None and publisher.ended == []


# -- the stream's ownership lease -------------------------------------------------------------


@pytest.fixture
def ownership() -> FakeOwnership:
    return FakeOwnership()


@pytest.fixture
async def owned(
    tmp_path: Path, keys: KeyTable, ownership: FakeOwnership
) -> AsyncIterator[LivePaths]:
    """Live paths whose leases come from ``ownership``; a stream held elsewhere is refused
    after one request to hand it over."""
    settings = Settings(data_dir=tmp_path, output_backoff_max_seconds=1)
    registry = LivePaths(
        settings,
        ffmpeg=fake_ffmpeg(tmp_path),
        authorizer=keys,
        ownership=ownership,
        handover_seconds=0,
    )
    yield registry
    await registry.close()


async def test_a_publish_of_a_stream_held_by_another_node_is_refused(
    owned: LivePaths, keys: KeyTable, ownership: FakeOwnership
) -> None:
    ownership.elsewhere[STREAM] = "node-b"
    with pytest.raises(LiveElsewhere, match="live on another node"):
        await go_live(owned, keys, PublishGrant(STREAM))
    assert owned.get(STREAM) is None
    assert ownership.asked == [("node-b", STREAM)]  # asked to hand over before refusing
    assert ownership.released == []


async def test_an_owner_that_hands_over_lets_the_newer_publish_win(
    tmp_path: Path, keys: KeyTable
) -> None:
    ownership = FakeOwnership(hands_over=True)
    ownership.elsewhere[STREAM] = "node-b"
    ownership.generations[STREAM] = 4
    settings = Settings(data_dir=tmp_path)
    paths = LivePaths(settings, ffmpeg=fake_ffmpeg(tmp_path), authorizer=keys, ownership=ownership)
    try:
        path = await go_live(paths, keys, PublishGrant(STREAM))
        assert ownership.asked == [("node-b", STREAM)] and ownership.claims == [STREAM] * 2
        assert path.lease_generation == 6 and path.info.lease_generation == 6
    finally:
        await paths.close()


async def test_a_lost_lease_ends_the_path_and_disconnects_its_publisher(
    owned: LivePaths, keys: KeyTable, ownership: FakeOwnership
) -> None:
    path = await go_live(owned, keys, PublishGrant(STREAM))
    publisher = path.publisher
    assert isinstance(publisher, FakePublisher)
    ownership.lose(STREAM)
    await asyncio.wait_for(path.ended.wait(), 10)
    assert publisher.ended == ["lease_lost"]
    assert owned.get(STREAM) is None
    with pytest.raises(LiveElsewhere):  # the new owner has it now
        await owned.admit("key", FakePublisher())


async def test_the_end_of_a_session_releases_its_lease(
    owned: LivePaths, keys: KeyTable, ownership: FakeOwnership
) -> None:
    path = await go_live(owned, keys, PublishGrant(STREAM, reconnect_window_seconds=0))
    assert ownership.held == {STREAM: 1}
    assert path.publisher is not None
    await path.leave(path.publisher, clean=False, reason="publisher_left")
    assert path.ended.is_set() and ownership.released == [(STREAM, 1)]
    again = await owned.admit("key", FakePublisher())
    assert again is not path and again.lease_generation == 2  # a new ownership


async def test_a_reconnect_inside_the_window_keeps_the_lease_and_its_generation(
    owned: LivePaths, keys: KeyTable, ownership: FakeOwnership
) -> None:
    path = await go_live(owned, keys, PublishGrant(STREAM, reconnect_window_seconds=600))
    assert path.publisher is not None
    await path.leave(path.publisher, clean=False, reason="publisher_left")
    assert path.reconnecting
    assert await owned.admit("key", FakePublisher("198.51.100.6:6000")) is path
    assert path.lease_generation == 1 and ownership.claims == [STREAM]
    assert ownership.released == [] and ownership.held == {STREAM: 1}
    assert await owned.end(STREAM, "completed")
    assert ownership.released == [(STREAM, 1)]


class GatedStartEvents(NoStreamEvents):
    """Session events whose ``session_started`` write waits for :attr:`gate`, as a write to a
    busy database does; the order in which writes complete is in :attr:`done`."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started_writing = asyncio.Event()
        self.done: list[str] = []

    async def session_started(self, info: SessionInfo) -> None:
        self.started_writing.set()
        await self.gate.wait()
        self.done.append("started")

    async def session_ended(
        self, info: SessionInfo, *, ended_at: float, reason: EndReason, bytes_in: int
    ) -> None:
        self.done.append(f"ended:{reason}")


async def test_a_session_that_ends_while_its_start_is_being_written_is_recorded_in_order(
    tmp_path: Path, keys: KeyTable, gate: GatedAuthorizer
) -> None:
    """The end's write waits for the start's: written at once they both insert the session's
    row, and the end was lost to the start's primary key (an IntegrityError under load)."""
    events = GatedStartEvents()
    settings = Settings(data_dir=tmp_path, output_backoff_max_seconds=1)
    registry = LivePaths(settings, ffmpeg=fake_ffmpeg(tmp_path), authorizer=gate, events=events)
    try:
        path = await go_live(registry, keys, PublishGrant(STREAM))
        await events.started_writing.wait()
        ending = asyncio.create_task(registry.end(path.stream_id, "completed"))
        await eventually(lambda: path.publisher is None)
        assert events.done == [], "the end was written while the start was still being written"
        events.gate.set()
        assert await ending
        assert events.done == ["started", "ended:completed"]
    finally:
        events.gate.set()
        await registry.close()
