"""What deleting a stream leaves behind, on SQLite and PostgreSQL: its live session ends, its
recordings stop playing at once and their files are removed, also after a crash in between."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import timedelta

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient
from sqlalchemy import event, select, update

from api import cli
from api.app import create_app
from api.keys import DB_ENGINE, DB_SESSIONMAKER, DELETION_SWEEPER, PATHS
from api.models import LiveStream, Recording, utc_now
from config import Settings
from tests.api.conftest import AccountCredentials, assert_error, create_stream, go_live
from tests.api.recording_support import T0, add_recording
from tests.polling import eventually


async def _recording_rows(client: TestClient, stream_id: str) -> list[str]:
    async with client.app[DB_SESSIONMAKER]() as session:
        query = select(Recording.id).where(Recording.live_stream_id == stream_id)
        return list((await session.execute(query)).scalars())


async def _assert_playable(client: TestClient, recording_id: str) -> None:
    response = await client.get(f"/recordings/{recording_id}/index.m3u8")
    assert response.status == 200, await response.text()
    assert (await client.get(f"/recordings/{recording_id}/s-1-0.ts")).status == 200


async def _assert_gone(client: TestClient, recording_id: str) -> None:
    for name in ("index.m3u8", "s-1-0.ts"):
        response = await client.get(f"/recordings/{recording_id}/{name}")
        await assert_error(response, 404, "not_found")


def _files_left(settings: Settings) -> list[str]:
    """What is under the recordings directory, as relative paths. The removal runs in the
    background, so what vanishes during the walk is skipped (``os.walk`` ignores such errors;
    ``Path.rglob`` raises)."""
    root = settings.recordings_dir
    found = []
    for directory, directories, files in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, n), root) for n in directories + files]
    return sorted(found)


async def test_deleting_a_stream_withdraws_its_recordings_at_once_and_removes_them(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    stream = await create_stream(api_client, account, record=True)
    other = await create_stream(api_client, account, record=True)
    old = await add_recording(api_client, stream["id"], started=T0)
    new = await add_recording(api_client, stream["id"], started=T0 + timedelta(hours=1))
    kept = await add_recording(api_client, other["id"], started=T0)
    publisher = await go_live(api_client, stream["id"])
    for recording_id in (old, new, kept):
        await _assert_playable(api_client, recording_id)

    response = await api_client.delete(f"/v1/livestreams/{stream['id']}", headers=account.headers)

    assert response.status == 200
    assert publisher.ended == ["deleted"]
    for recording_id in (old, new):
        await _assert_gone(api_client, recording_id)
    await _assert_playable(api_client, kept)
    assert await _recording_rows(api_client, stream["id"]) == []
    expected = [".trash", kept, *(f"{kept}/{n}" for n in ("index.m3u8", "s-1-0.ts", "s-1-1.ts"))]
    await eventually(lambda: _files_left(app_settings) == expected)


async def test_recordings_a_crash_left_behind_are_removed_at_start(
    api_client: TestClient,
    account: AccountCredentials,
    app_settings: Settings,
    aiohttp_client: AiohttpClient,
) -> None:
    stream = await create_stream(api_client, account, record=True)
    recording = await add_recording(api_client, stream["id"], started=T0)
    async with api_client.app[DB_SESSIONMAKER]() as session, session.begin():
        # deleted by an earlier version (or the process stopped before the files went)
        await session.execute(
            update(LiveStream).where(LiveStream.id == stream["id"]).values(deleted_at=utc_now())
        )
        await session.execute(
            update(Recording).where(Recording.id == recording).values(status="deleted")
        )
    leftover = app_settings.recordings_dir / ".trash" / "x"
    leftover.mkdir(parents=True)
    (leftover / "s.ts").write_bytes(b"old")

    await api_client.app[DELETION_SWEEPER].close()  # the server stopped (its full sweep too)
    node = await aiohttp_client(create_app(app_settings))  # the restarted server

    await eventually(lambda: _files_left(app_settings) == [".trash"])
    await _assert_gone(node, recording)
    assert await _recording_rows(node, stream["id"]) == []
    assert node.app[PATHS].get(stream["id"]) is None


async def test_an_idle_sweep_asks_the_database_nothing(api_client: TestClient) -> None:
    """The periodic sweep runs every ``LIVERELAY_DELETION_CHECK_SECONDS`` on every node: with
    nothing live here it must cost nothing (an idle poll of the database showed in the CPU of
    a node with one stream)."""
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sweeper = api_client.app[DELETION_SWEEPER]
    await eventually(lambda: sweeper.sweeps >= 1)  # the full sweep at start-up is over
    engine = api_client.app[DB_ENGINE].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            await sweeper.sweep()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []


async def test_apikey_delete_withdraws_the_accounts_recordings_before_it_returns(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    """The CLI shares the node's data directory: what it deleted is not served a moment
    longer, whenever the server's next sweep comes."""
    stream = await create_stream(api_client, account, record=True)
    recording = await add_recording(api_client, stream["id"], started=T0)
    await _assert_playable(api_client, recording)
    namespace = argparse.Namespace(apikey=account.apikey)
    assert await asyncio.to_thread(cli.apikey_delete, app_settings, namespace) == 0
    await _assert_gone(api_client, recording)
