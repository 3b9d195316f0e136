"""``liverelay serve`` as a node: registered and heartbeating while the app runs, counted in
``/metrics``, marked gone by a clean shutdown."""

from __future__ import annotations

import re
import socket

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.cluster.nodes import count_live_nodes, list_nodes
from api.keys import CLUSTER, METRICS, RTMP_PORT
from config import Settings

LIVE_NODES = re.compile(r"^liverelay_cluster_live_nodes (\d+)\.0$", re.M)


async def test_a_serving_node_is_live_in_the_registry_until_it_stops(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client: TestClient = await aiohttp_client(create_app(app_settings))
    cluster = client.app[CLUSTER]
    node_id = cluster.node_id
    async with sessionmaker() as session:
        nodes = {n.id: n for n in await list_nodes(session, app_settings.lease_seconds)}
        live = await count_live_nodes(session, app_settings.lease_seconds)
    assert nodes[node_id].state == "serving"
    host = socket.gethostname()  # the settings listen on every address
    assert nodes[node_id].internal_url == f"http://{host}:{app_settings.http_port}"
    assert nodes[node_id].rtmp_address == f"rtmp://{host}:{client.app[RTMP_PORT]}"
    assert cluster.heartbeat.interval == app_settings.lease_seconds / 3
    assert cluster.leases.leases.node_id == node_id

    assert await cluster.heartbeat.beat()
    exported = LIVE_NODES.search(client.app[METRICS].render().decode())
    assert exported is not None and int(exported.group(1)) == live

    await client.close()
    async with sessionmaker() as session:
        nodes = {n.id: n for n in await list_nodes(session, app_settings.lease_seconds)}
    assert nodes[node_id].state == "gone"
