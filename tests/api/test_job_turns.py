"""Periodic jobs with several nodes on one PostgreSQL database: retention and the deletion
sweeper's full sweep run on one node at a time (the holder of the job's lease), another node
takes over when the holder stops or its lease expires, and every node still ends the deleted
streams live on it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.cluster.clock import clock_of
from api.jobs.deletion import DeletionSweeper
from api.jobs.retention import RetentionTask
from api.jobs.turns import JobTurns
from api.keys import DB_SESSIONMAKER, DELETION_SWEEPER, RECORDING_STORAGE, RETENTION
from api.models import new_object_id
from config import Settings
from ingest.live import EndReason
from tests.api.conftest import AccountCredentials, create_stream
from tests.polling import eventually

LONG_AGO = timedelta(days=36500)
"""A retention nothing in the shared test database is old enough for."""


@pytest.fixture
def database_url(postgresql_url: str) -> str:
    """These tests are about nodes sharing PostgreSQL (the cluster database)."""
    return postgresql_url


async def expire_job_lease(sessionmaker: async_sessionmaker[AsyncSession], job: str) -> None:
    """Make the lease of ``job`` expired a second ago, by the database's clock."""
    async with sessionmaker() as session, session.begin():
        clock = clock_of(session)
        result = await session.execute(
            text(f"UPDATE job_leases SET expires_at = {clock.plus('s')} WHERE job = :job"),
            {"s": -1.0, "job": job},
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


def retention_on(
    sessionmaker: async_sessionmaker[AsyncSession], job: str, node: str
) -> RetentionTask:
    turns = JobTurns(sessionmaker, job, node_id=node, interval=60.0)
    return RetentionTask(sessionmaker, LONG_AGO, turns=turns)


async def test_two_started_nodes_run_each_job_once(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    settings = dataclasses.replace(app_settings, retention_days=36500)
    nodes = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    prunes = [node.app[RETENTION] for node in nodes]
    sweepers = [node.app[DELETION_SWEEPER] for node in nodes]

    await eventually(lambda: all(task.periods >= 1 for task in prunes))
    await eventually(lambda: all(sweeper.sweeps >= 1 for sweeper in sweepers))

    assert sorted(task.passes for task in prunes) == [0, 1]
    assert sorted(sweeper.full_sweeps for sweeper in sweepers) == [0, 1]


async def test_the_job_passes_to_another_node_when_its_holder_stops_or_dies(
    api_client: TestClient,
) -> None:
    sessionmaker = api_client.app[DB_SESSIONMAKER]
    job = f"retention-{new_object_id()}"
    first, second = (retention_on(sessionmaker, job, node) for node in ("node-a", "node-b"))

    assert await first.period() is not None
    assert await second.period() is None  # the first holds the job
    assert await first.period() is not None  # and keeps it from one period to the next
    assert await second.period() is None

    # The first node dies: its lease is left until it expires.
    assert await second.period() is None
    await expire_job_lease(sessionmaker, job)
    assert await second.period() is not None
    assert (first.passes, second.passes) == (2, 1)

    # The second stops cleanly: the job is free at once.
    await second.close()
    third = retention_on(sessionmaker, job, "node-c")
    assert await third.period() is not None
    assert await second.period() is None


async def test_every_node_ends_its_deleted_live_streams_whoever_runs_the_full_sweep(
    api_client: TestClient, account: AccountCredentials
) -> None:
    sessionmaker = api_client.app[DB_SESSIONMAKER]
    stream_id = (await create_stream(api_client, account))["id"]
    response = await api_client.delete(f"/v1/livestreams/{stream_id}", headers=account.headers)
    assert response.status == 200, await response.text()
    job = f"deletion-sweep-{new_object_id()}"
    holder = JobTurns(sessionmaker, job, node_id="node-a", interval=60.0)
    assert await holder.mine()
    ended: list[tuple[str, EndReason]] = []

    async def end_live(ended_id: str, reason: EndReason) -> bool:
        ended.append((ended_id, reason))
        return True

    other_node = DeletionSweeper(
        sessionmaker,
        api_client.app[RECORDING_STORAGE],
        live_ids=lambda: [stream_id],  # the deleted stream is live on this node
        end_live=end_live,
        interval=60.0,
        turns=JobTurns(sessionmaker, job, node_id="node-b", interval=60.0),
    )

    assert await other_node.sweep_all() is False  # not its turn at the full sweep
    assert ended == [(stream_id, "deleted")]  # but it ended its own live stream
    assert other_node.full_sweeps == 0
