"""The registry says what each node is doing: ``serving``, ``draining`` once its drain began,
``lost`` when its heartbeat is stale, ``gone`` after a clean stop; ``liverelay nodes`` and
``/metrics`` show it (two in-process nodes on PostgreSQL)."""

from __future__ import annotations

import re

from api.cluster.listing import node_json, nodes_table
from api.cluster.nodes import NodeInfo, list_nodes
from api.keys import CLUSTER, METRICS
from api.live.drain import begin_drain
from tests.api.cluster.conftest import set_database_time
from tests.cluster_support import LEASE_SECONDS, Node
from tests.polling import eventually


async def states(node: Node) -> dict[str, NodeInfo]:
    async with node.sessionmaker() as session:
        return {n.id: n for n in await list_nodes(session, LEASE_SECONDS)}


def exported(node: Node, state: str) -> int:
    text = node.client.app[METRICS].render().decode()
    found = re.search(rf'^liverelay_cluster_nodes{{state="{state}"}} (\d+)\.0$', text, re.M)
    assert found is not None, text
    return int(found.group(1))


async def test_a_draining_node_is_shown_draining_and_a_silent_one_lost(
    two_nodes: list[Node],
) -> None:
    a, b = two_nodes
    nodes = await states(a)
    assert (nodes[a.node_id].state, nodes[b.node_id].state) == ("serving", "serving")
    assert nodes[b.node_id].draining_since is None
    assert await a.client.app[CLUSTER].heartbeat.beat()
    assert exported(a, "serving") >= 2

    assert "liverelay_node_draining 0.0" in b.client.app[METRICS].render().decode()
    assert begin_drain(b.client.app, "test")
    assert "liverelay_node_draining 1.0" in b.client.app[METRICS].render().decode()

    async def drained() -> NodeInfo | None:
        node = (await states(a))[b.node_id]
        return node if node.state == "draining" else None

    draining = await eventually(drained, 10)  # at once, not at the next heartbeat
    assert draining.draining_since is not None
    assert node_json(draining)["state"] == "draining"
    assert node_json(draining)["drainingSince"] is not None
    assert nodes_table([draining]).splitlines()[1].split()[-1] == "draining"
    assert await a.client.app[CLUSTER].heartbeat.beat()
    assert exported(a, "draining") == 1

    # A further heartbeat of the draining node keeps it draining.
    assert await b.client.app[CLUSTER].heartbeat.beat()
    assert (await states(a))[b.node_id].state == "draining"

    # Silent for longer than the lease lifetime: lost, whatever it last said.
    await set_database_time(
        a.sessionmaker, "cluster_nodes", "last_seen_at", ("id", b.node_id), -LEASE_SECONDS - 1
    )
    assert (await states(a))[b.node_id].state == "lost"
    assert await a.client.app[CLUSTER].heartbeat.beat()
    assert exported(a, "lost") >= 1
    assert exported(a, "draining") == 0
