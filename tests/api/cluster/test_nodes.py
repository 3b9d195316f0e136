"""The node registry on SQLite and PostgreSQL: registration, heartbeats, lost and gone nodes,
ids in use, and the identity a node derives from its settings."""

from __future__ import annotations

import re
import secrets
import socket
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.context import CpuShare, Heartbeat
from api.cluster.nodes import (
    DATA_ID_FILE,
    FORGET_AFTER_SECONDS,
    NodeIdentity,
    NodeIdInUse,
    NodeInfo,
    NodeRegistry,
    count_live_nodes,
    data_directory_id,
    list_nodes,
    node_identity,
)
from config import Settings, SettingsError
from tests.api.cluster.conftest import set_database_time
from tests.fakes import FakeClock

LOST_AFTER = 30.0

Sessions = async_sessionmaker[AsyncSession]


def identity(node_id: str | None = None) -> NodeIdentity:
    return NodeIdentity(
        id=node_id or f"test-{secrets.token_hex(4)}",
        internal_url="http://10.0.0.7:8080",
        rtmp_address="rtmp://10.0.0.7:1935",
        version="1.2.3",
    )


async def listed(sessionmaker: Sessions, node_id: str) -> NodeInfo | None:
    async with sessionmaker() as session:
        found = [n for n in await list_nodes(session, LOST_AFTER) if n.id == node_id]
    return found[0] if found else None


async def live_count(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return await count_live_nodes(session, LOST_AFTER)


async def make_silent(sessionmaker: Sessions, node_id: str, seconds: float) -> None:
    """Make the node's last heartbeat ``seconds`` old by the database's clock."""
    await set_database_time(
        sessionmaker, "cluster_nodes", "last_seen_at", ("id", node_id), -seconds
    )


async def test_a_registered_node_is_listed_live_with_what_it_reported(
    sessionmaker: Sessions,
) -> None:
    registry = NodeRegistry(sessionmaker, identity(), LOST_AFTER)
    before = await live_count(sessionmaker)
    await registry.register()
    node = await listed(sessionmaker, registry.identity.id)
    assert node is not None
    assert (node.internal_url, node.rtmp_address, node.version) == (
        "http://10.0.0.7:8080",
        "rtmp://10.0.0.7:1935",
        "1.2.3",
    )
    assert (node.state, node.live_streams, node.load, node.stopped_at) == ("serving", 0, 0.0, None)
    assert node.last_seen_at >= node.started_at
    assert await live_count(sessionmaker) == before + 1

    assert await registry.heartbeat(live_streams=3, load=0.25)
    node = await listed(sessionmaker, registry.identity.id)
    assert node is not None and (node.live_streams, node.load) == (3, 0.25)


async def test_a_silent_node_is_lost_and_a_stopped_node_gone(sessionmaker: Sessions) -> None:
    silent = NodeRegistry(sessionmaker, identity(), LOST_AFTER)
    stopped = NodeRegistry(sessionmaker, identity(), LOST_AFTER)
    await silent.register()
    await stopped.register()
    before = await live_count(sessionmaker)
    await make_silent(sessionmaker, silent.identity.id, LOST_AFTER + 1)
    await stopped.heartbeat(live_streams=2, load=0.5)
    await stopped.stop()

    lost = await listed(sessionmaker, silent.identity.id)
    assert lost is not None and lost.state == "lost"
    assert lost.seen_seconds_ago > LOST_AFTER
    gone = await listed(sessionmaker, stopped.identity.id)
    assert gone is not None and gone.state == "gone"
    assert gone.stopped_at is not None and gone.live_streams == 0
    assert await live_count(sessionmaker) == before - 2
    assert not await stopped.heartbeat(live_streams=1, load=0.1)  # gone stays gone

    assert await silent.heartbeat(live_streams=0, load=0.0)  # heard from again: live
    back = await listed(sessionmaker, silent.identity.id)
    assert back is not None and back.state == "serving"


async def test_an_id_is_refused_while_its_node_is_live(sessionmaker: Sessions) -> None:
    first = NodeRegistry(sessionmaker, identity(), LOST_AFTER)
    await first.register()
    second = NodeRegistry(sessionmaker, identity(first.identity.id), LOST_AFTER)
    with pytest.raises(NodeIdInUse, match="in use by a running node"):
        await second.register()

    await make_silent(sessionmaker, first.identity.id, LOST_AFTER + 1)
    await second.register()  # the first one is lost: its id may be reused
    node = await listed(sessionmaker, first.identity.id)
    assert node is not None and node.state == "serving"
    # The lost process, back, neither heartbeats nor stops in the new one's place.
    assert not await first.heartbeat(live_streams=9, load=0.9)
    await first.stop()
    node = await listed(sessionmaker, first.identity.id)
    assert node is not None and (node.state, node.live_streams) == ("serving", 0)

    await second.stop()
    await first.register()  # and a cleanly stopped node's id at once
    node = await listed(sessionmaker, first.identity.id)
    assert node is not None and node.state == "serving" and node.stopped_at is None
    assert await first.heartbeat(live_streams=1, load=0.1)


async def test_nodes_unseen_for_long_are_forgotten_when_a_node_registers(
    sessionmaker: Sessions,
) -> None:
    old = NodeRegistry(sessionmaker, identity(), LOST_AFTER)
    await old.register()
    await make_silent(sessionmaker, old.identity.id, FORGET_AFTER_SECONDS + 60)
    await NodeRegistry(sessionmaker, identity(), LOST_AFTER).register()
    assert await listed(sessionmaker, old.identity.id) is None


def test_a_node_id_is_unique_per_process_by_default_and_names_the_host() -> None:
    settings = Settings(http_host="0.0.0.0", http_port=8080, rtmp_host="10.1.2.3")
    first, second = node_identity(settings, 1935), node_identity(settings, 1935)
    assert first.id != second.id
    host = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())
    assert re.fullmatch(rf"{re.escape(host[:120])}-[0-9a-f]{{6}}", first.id)
    assert first.internal_url == f"http://{socket.gethostname()}:8080"
    assert first.rtmp_address == "rtmp://10.1.2.3:1935"


def test_configured_node_id_and_internal_url_are_used() -> None:
    settings = Settings.from_env(
        {"LIVERELAY_NODE_ID": "edge-1", "LIVERELAY_INTERNAL_URL": "http://edge-1.internal:8080/"}
    )
    me = node_identity(settings, 19350)
    assert (me.id, me.internal_url) == ("edge-1", "http://edge-1.internal:8080")
    assert me.rtmp_address.endswith(":19350")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LIVERELAY_NODE_ID", "has space"),
        ("LIVERELAY_NODE_ID", "x" * 129),
        ("LIVERELAY_INTERNAL_URL", "edge-1:8080"),
        ("LIVERELAY_LEASE_SECONDS", "0"),
    ],
)
def test_bad_cluster_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_cpu_share_is_cpu_time_per_wall_time_per_cpu() -> None:
    cpu, wall = FakeClock(10.0), FakeClock(100.0)
    share = CpuShare(cpu, wall, cpus=4)
    cpu.advance(0.1)
    wall.advance(0.1)
    assert share() == 0.0  # too short a window: nothing measured yet
    cpu.advance(1.9)
    wall.advance(0.9)
    assert share() == 0.5
    wall.advance(0.1)
    assert share() == 0.5  # the last share until the window is long enough again
    wall.advance(0.9)
    assert share() == 0.0


async def test_a_heartbeat_registers_again_a_node_whose_row_went_away(
    sessionmaker: Sessions,
) -> None:
    registry = NodeRegistry(sessionmaker, identity(), LOST_AFTER)
    heartbeat = Heartbeat(registry, sessionmaker, lambda: 2, LOST_AFTER / 3, load=lambda: 0.5)
    await registry.register()
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text("DELETE FROM cluster_nodes WHERE id = :id"), {"id": registry.identity.id}
        )
    assert await heartbeat.beat()
    node = await listed(sessionmaker, registry.identity.id)
    assert node is not None and (node.state, node.live_streams, node.load) == ("serving", 2, 0.5)
    assert heartbeat.live_nodes == await live_count(sessionmaker)


async def test_a_heartbeat_of_a_node_whose_id_was_taken_fails(sessionmaker: Sessions) -> None:
    lost = NodeRegistry(sessionmaker, identity(), LOST_AFTER)
    heartbeat = Heartbeat(lost, sessionmaker, lambda: 0, LOST_AFTER / 3, load=lambda: 0.0)
    await lost.register()
    await make_silent(sessionmaker, lost.identity.id, LOST_AFTER + 1)
    await NodeRegistry(sessionmaker, identity(lost.identity.id), LOST_AFTER).register()
    assert not await heartbeat.beat()


def test_a_data_directory_keeps_its_id(tmp_path: Path) -> None:
    first = data_directory_id(tmp_path / "data")
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert data_directory_id(tmp_path / "data") == first  # a restarted process: the same
    assert data_directory_id(tmp_path / "other") != first
    (tmp_path / "data" / DATA_ID_FILE).write_text("not an id")
    with pytest.raises(RuntimeError, match="data-id"):
        data_directory_id(tmp_path / "data")
