"""The ``liverelay`` command, run as a real subprocess against both databases."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from api.auth import TokenCache, issue_token
from api.cluster.nodes import NodeIdentity, NodeRegistry
from api.keys import CLUSTER, DB_SESSIONMAKER
from config import Settings
from tests.api.cluster.conftest import set_database_time
from tests.api.conftest import assert_error
from tests.api.recording_support import T0, add_recording
from tests.fakes import FakeClock

LIVERELAY = Path(sys.executable).parent / "liverelay"


@dataclasses.dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_settings(app_settings: Settings, database_url: str) -> Settings:
    """The app's settings as the CLI sees them: SQLite defaults to ``<data_dir>/liverelay.db``."""
    if database_url.startswith("sqlite"):
        return dataclasses.replace(app_settings, database_url=None)
    return app_settings


@pytest.fixture
def cli_env(cli_settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY_")}
    env["LIVERELAY_DATA_DIR"] = str(cli_settings.data_dir)
    if cli_settings.database_url is not None:
        env["LIVERELAY_DATABASE_URL"] = cli_settings.database_url.value
    return env


@pytest.fixture
async def cli_client(aiohttp_client: AiohttpClient, cli_settings: Settings) -> TestClient:
    """The app running on the same database the CLI writes to."""
    return await aiohttp_client(create_app(cli_settings))


async def liverelay(env: dict[str, str], *args: str, stdin: bytes | None = None) -> Completed:
    """Run ``liverelay *args`` with ``env``; ``stdin`` is its standard input (none if None)."""
    assert LIVERELAY.exists(), f"console script not installed at {LIVERELAY}"
    proc = await asyncio.create_subprocess_exec(
        str(LIVERELAY),
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


async def test_apikey_create_while_serving(
    cli_client: TestClient, cli_env: dict[str, str], cli_settings: Settings
) -> None:
    result = await liverelay(cli_env, "apikey", "create", "--name", "Demo user 01")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"apikey", "secret", "userId", "token"}
    claims = jwt.decode(created["token"], created["secret"], algorithms=["HS256"])
    assert claims["apikey"] == created["apikey"]
    assert claims["exp"] - claims["iat"] == cli_settings.token_ttl_seconds
    assert created["secret"] not in result.stderr

    headers = {"Authorization": created["token"]}
    response = await cli_client.post("/v1/livestreams", json={"name": "x"}, headers=headers)
    assert response.status == 201
    stream = await response.json()
    assert stream["userId"] == created["userId"]
    assert stream["user"] == {"name": "Demo user 01", "id": created["userId"]}


async def test_apikey_list_and_delete(cli_client: TestClient, cli_env: dict[str, str]) -> None:
    created = json.loads((await liverelay(cli_env, "apikey", "create", "--name", "x")).stdout)
    listed = await liverelay(cli_env, "apikey", "list")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    mine = [e for e in entries if e["apikey"] == created["apikey"]]
    assert mine and set(mine[0]) == {"apikey", "userId", "name", "createdAt"}
    assert created["secret"] not in listed.stdout

    deleted = await liverelay(cli_env, "apikey", "delete", created["apikey"])
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"apikey": created["apikey"], "deleted": True}
    response = await cli_client.get("/v1/livestreams", headers={"Authorization": created["token"]})
    await assert_error(response, 401, "unauthorized")

    again = await liverelay(cli_env, "apikey", "delete", created["apikey"])
    assert again.returncode == 1
    assert again.stdout == ""
    assert "no active API key" in again.stderr
    entries = json.loads((await liverelay(cli_env, "apikey", "list")).stdout)
    assert created["apikey"] not in [e["apikey"] for e in entries]


async def test_token_command(cli_client: TestClient, cli_env: dict[str, str]) -> None:
    """The secret comes from ``LIVERELAY_SECRET`` or standard input, never the command line
    (where ``ps`` and shell history keep it)."""
    created = json.loads((await liverelay(cli_env, "apikey", "create", "--name", "x")).stdout)
    by_env = await liverelay(
        {**cli_env, "LIVERELAY_SECRET": created["secret"]},
        *("token", "--apikey", created["apikey"], "--ttl", "120"),
    )
    by_stdin = await liverelay(
        cli_env, "token", "--apikey", created["apikey"], stdin=f"{created['secret']}\n".encode()
    )
    for result, ttl in ((by_env, 120), (by_stdin, 86_400)):
        assert result.returncode == 0, result.stderr
        token = result.stdout.strip()
        claims = jwt.decode(token, created["secret"], algorithms=["HS256"])
        assert claims["apikey"] == created["apikey"]
        assert claims["exp"] - claims["iat"] == ttl
        response = await cli_client.get("/v1/livestreams", headers={"Authorization": token})
        assert response.status == 200


async def test_token_secret_is_refused_on_the_command_line(cli_env: dict[str, str]) -> None:
    secret = "0123456789abcdef-cli-secret"
    result = await liverelay(cli_env, "token", "--apikey", "k", "--secret", secret)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "LIVERELAY_SECRET" in result.stderr and "standard input" in result.stderr
    assert secret not in result.stderr


async def test_tokens_stay_within_the_max_ttl(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "LIVERELAY_SECRET": "s" * 32}
    too_long = await liverelay(env, "token", "--apikey", "k", "--ttl", "2678401")
    assert too_long.returncode == 2 and too_long.stdout == ""
    assert "--ttl must be at most LIVERELAY_JWT_MAX_TTL_SECONDS (2678400)" in too_long.stderr
    longest = await liverelay(env, "token", "--apikey", "k", "--ttl", "2678400")
    assert longest.returncode == 0, longest.stderr
    claims = jwt.decode(longest.stdout.strip(), "s" * 32, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 2678400
    refused = await liverelay(
        {**env, "LIVERELAY_TOKEN_TTL_SECONDS": "2678401"}, "apikey", "create", "--name", "x"
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert "LIVERELAY_TOKEN_TTL_SECONDS must be > 0 and at most" in refused.stderr


async def test_token_without_a_secret_is_a_clear_error(cli_env: dict[str, str]) -> None:
    for stdin in (None, b"", b"  \n"):
        result = await liverelay(
            {**cli_env, "LIVERELAY_SECRET": ""}, "token", "--apikey", "k", stdin=stdin
        )
        assert result.returncode == 2
        assert result.stdout == ""
        assert "no secret: set LIVERELAY_SECRET or pass it on standard input" in result.stderr


async def test_migrate_and_bad_settings(cli_env: dict[str, str]) -> None:
    result = await liverelay(cli_env, "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    result = await liverelay({**cli_env, "LIVERELAY_HTTP_PORT": "eighty"}, "migrate")
    assert result.returncode == 2
    assert "LIVERELAY_HTTP_PORT" in result.stderr


async def test_apikey_rotate_keeps_the_account_and_retires_old_tokens(
    aiohttp_client: AiohttpClient, cli_settings: Settings, cli_env: dict[str, str]
) -> None:
    clock = FakeClock(time.time())
    cache = TokenCache(5.0, clock=clock)
    client = await aiohttp_client(create_app(cli_settings, token_cache=cache))
    created = json.loads((await liverelay(cli_env, "apikey", "create", "--name", "x")).stdout)
    old = {"Authorization": created["token"]}
    response = await client.post("/v1/livestreams", json={"name": "s", "record": True}, headers=old)
    stream = await response.json()
    hook = {"url": "https://hooks.example.invalid/", "events": ["*"]}
    webhook = await (await client.post("/v1/webhooks", json=hook, headers=old)).json()
    recording = await add_recording(client, stream["id"], started=T0)
    assert (await client.get("/v1/livestreams", headers=old)).status == 200  # now cached

    rotated = await liverelay(cli_env, "apikey", "rotate", created["apikey"])

    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert set(new) == {"apikey", "secret", "userId", "token"}
    assert (new["apikey"], new["userId"]) == (created["apikey"], created["userId"])
    assert new["secret"] != created["secret"] and new["secret"] not in rotated.stderr
    assert jwt.decode(new["token"], new["secret"], algorithms=["HS256"])["apikey"] == new["apikey"]
    assert (await client.get("/v1/livestreams", headers=old)).status == 200  # still cached
    unseen = {"Authorization": issue_token(created["apikey"], created["secret"], 3600)}
    await assert_error(await client.get("/v1/livestreams", headers=unseen), 401, "unauthorized")
    clock.advance(6)  # the cache forgets the old token
    await assert_error(await client.get("/v1/livestreams", headers=old), 401, "unauthorized")

    headers = {"Authorization": new["token"]}
    streams = await (await client.get("/v1/livestreams", headers=headers)).json()
    assert [s["id"] for s in streams["data"]] == [stream["id"]]
    webhooks = await (await client.get("/v1/webhooks", headers=headers)).json()
    assert [w["id"] for w in webhooks["data"]] == [webhook["id"]]
    path = f"/v1/livestreams/{stream['id']}/recordings"
    recordings = await (await client.get(path, headers=headers)).json()
    assert [r["id"] for r in recordings["data"]] == [recording]

    unknown = await liverelay(cli_env, "apikey", "rotate", "not-a-key")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "no active API key" in unknown.stderr


async def test_nodes_lists_the_registry_as_a_table_and_as_json(
    cli_client: TestClient, cli_env: dict[str, str], cli_settings: Settings
) -> None:
    """The serving node is serving; a node silent for longer than the lease is lost."""
    serving = cli_client.app[CLUSTER].node_id
    silent = NodeIdentity("silent-node-7", "http://10.0.0.9:8080", "rtmp://10.0.0.9:1935", "0.9")
    sessionmaker = cli_client.app[DB_SESSIONMAKER]
    registry = NodeRegistry(sessionmaker, silent, cli_settings.lease_seconds)
    await registry.register()
    await registry.heartbeat(live_streams=4, load=0.25)
    await set_database_time(
        sessionmaker,
        "cluster_nodes",
        "last_seen_at",
        ("id", silent.id),
        -(cli_settings.lease_seconds + 3 * 3600),
    )

    listed = await liverelay(cli_env, "nodes", "--json")
    assert listed.returncode == 0, listed.stderr
    nodes = {node["id"]: node for node in json.loads(listed.stdout)}
    assert nodes[silent.id] == {
        "id": silent.id,
        "internalUrl": "http://10.0.0.9:8080",
        "rtmpAddress": "rtmp://10.0.0.9:1935",
        "version": "0.9",
        "startedAt": nodes[silent.id]["startedAt"],
        "lastSeenAt": nodes[silent.id]["lastSeenAt"],
        "stoppedAt": None,
        "drainingSince": None,
        "liveStreams": 4,
        "load": 0.25,
        "state": "lost",
    }
    assert nodes[serving]["state"] == "serving"
    assert nodes[serving]["liveStreams"] == 0

    table = await liverelay(cli_env, "nodes")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == [
        "NODE", "INTERNAL", "URL", "RTMP", "VERSION", "STARTED", "LAST", "SEEN", "LIVE", "LOAD",
        "STATE",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows[silent.id][1:4] == ["http://10.0.0.9:8080", "rtmp://10.0.0.9:1935", "0.9"]
    assert rows[silent.id][-5:] == ["3h", "ago", "4", "25%", "lost"]
    assert rows[serving][-1] == "serving"
