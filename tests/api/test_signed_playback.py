"""Signed playback: signing keys, ``playbackPolicy`` and the refusal of every bad token."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from api.cli import main
from api.keys import DB_SESSIONMAKER
from api.playback_tokens import Forbidden, PlaybackGuard, issue_playback_token
from config import Settings
from tests.api.conftest import (
    AccountCredentials,
    MakeAccount,
    assert_error,
    create_stream,
    go_live,
)

PLAYLIST = (
    b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"
    b'#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\nseg_00001.m4s\n'
)
SEGMENT = b"\x00\x00\x00\x08mdat" * 100


async def new_key(client: TestClient, account: AccountCredentials) -> dict[str, Any]:
    response = await client.post("/v1/signing-keys", headers=account.headers)
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def recorded(client: TestClient, stream_id: str, settings: Settings) -> str:
    """A recording of ``stream_id`` with a playlist and a segment on disk; its id."""
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        recording = await queries.create_recording(session, stream_id, datetime.now(UTC))
    directory = settings.recordings_dir / recording.id
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_bytes(PLAYLIST)
    (directory / "seg_00001.m4s").write_bytes(SEGMENT)
    (directory / "init.mp4").write_bytes(SEGMENT)
    return recording.id


async def assert_forbidden(response: Any) -> None:
    body = await assert_error(response, 403, "forbidden")
    assert body["message"] == "forbidden"
    assert body["details"] == []


async def test_signing_keys_are_per_account_and_show_the_private_key_once(
    api_client: TestClient, account: AccountCredentials, make_account: MakeAccount
) -> None:
    key = await new_key(api_client, account)
    assert set(key) == {"id", "privateKey", "createdAt"}
    assert base64.b64decode(key["privateKey"]).startswith(b"-----BEGIN PRIVATE KEY-----")

    listed = await (await api_client.get("/v1/signing-keys", headers=account.headers)).json()
    assert listed["pageInfo"] == {"currentPage": 1, "perPage": 20, "lastPage": 1}
    assert listed["data"] == [{"id": key["id"], "createdAt": key["createdAt"]}]
    one = await api_client.get(f"/v1/signing-keys/{key['id']}", headers=account.headers)
    assert await one.json() == {"id": key["id"], "createdAt": key["createdAt"]}

    other = await make_account("Other")
    response = await api_client.get(f"/v1/signing-keys/{key['id']}", headers=other.headers)
    await assert_error(response, 404, "not_found")
    response = await api_client.delete(f"/v1/signing-keys/{key['id']}", headers=other.headers)
    await assert_error(response, 404, "not_found")
    listed = await (await api_client.get("/v1/signing-keys", headers=other.headers)).json()
    assert listed["data"] == []

    response = await api_client.delete(f"/v1/signing-keys/{key['id']}", headers=account.headers)
    assert response.status == 200
    response = await api_client.get(f"/v1/signing-keys/{key['id']}", headers=account.headers)
    await assert_error(response, 404, "not_found")
    response = await api_client.get("/v1/signing-keys/nope", headers=account.headers)
    await assert_error(response, 404, "not_found")


async def test_playback_policy_is_public_by_default_and_can_change(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    assert stream["playbackPolicy"] == "public"
    signed = await create_stream(api_client, account, playbackPolicy="signed")
    assert signed["playbackPolicy"] == "signed"
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}",
        json={"playbackPolicy": "signed"},
        headers=account.headers,
    )
    assert (await response.json())["playbackPolicy"] == "signed"
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}", json={"playbackPolicy": "open"}, headers=account.headers
    )
    await assert_error(response, 400, "validation_error", ["playbackPolicy"])


async def test_a_signed_recording_plays_only_with_a_valid_token(
    api_client: TestClient,
    account: AccountCredentials,
    make_account: MakeAccount,
    app_settings: Settings,
) -> None:
    stream = await create_stream(api_client, account, playbackPolicy="signed")
    other_stream = await create_stream(api_client, account, playbackPolicy="signed")
    recording_id = await recorded(api_client, stream["id"], app_settings)
    key = await new_key(api_client, account)
    stranger_key = await new_key(api_client, await make_account("Stranger"))
    gone_key = await new_key(api_client, account)
    sid, kid, private = stream["id"], key["id"], key["privateKey"]
    pem = base64.b64decode(private).decode()

    valid = issue_playback_token(sid, kid, private, 600)
    refused = {
        "missing": None,
        "empty": "",
        "garbage": "not-a-jwt",
        "expired": issue_playback_token(sid, kid, private, 60, now=time.time() - 3600),
        "wrong stream": issue_playback_token(other_stream["id"], kid, private, 600),
        "wrong audience": jwt.encode(
            {"sub": sid, "aud": "t", "exp": int(time.time()) + 600},
            pem,
            algorithm="RS256",
            headers={"kid": kid},
        ),
        "no exp": jwt.encode(
            {"sub": sid, "aud": "v"}, pem, algorithm="RS256", headers={"kid": kid}
        ),
        "unknown kid": issue_playback_token(sid, "f" * 24, private, 600),
        "another account's key": issue_playback_token(
            sid, stranger_key["id"], stranger_key["privateKey"], 600
        ),
        "signed by another key": issue_playback_token(sid, kid, stranger_key["privateKey"], 600),
        "HS256": jwt.encode(
            {"sub": sid, "aud": "v", "exp": int(time.time()) + 600},
            "a shared secret of at least thirty-two bytes",
            algorithm="HS256",
            headers={"kid": kid},
        ),
        "deleted key": issue_playback_token(sid, gone_key["id"], gone_key["privateKey"], 600),
    }
    response = await api_client.delete(
        f"/v1/signing-keys/{gone_key['id']}", headers=account.headers
    )
    assert response.status == 200

    urls = [
        f"/recordings/{recording_id}/index.m3u8",
        f"/recordings/{recording_id}/seg_00001.m4s",
        f"/live/{sid}/storage/index.m3u8",
    ]
    for url in urls:
        for case, token in refused.items():
            params = {} if token is None else {"token": token}
            response = await api_client.get(url, params=params)
            assert response.status == 403, (url, case)
            await assert_forbidden(response)

    response = await api_client.get(urls[0], params={"token": valid})
    assert response.status == 200
    body = (await response.read()).decode()
    assert f'#EXT-X-MAP:URI="init.mp4?token={valid}"' in body
    assert f"seg_00001.m4s?token={valid}" in body
    response = await api_client.get(urls[2], params={"token": valid})
    assert f"/recordings/{recording_id}/seg_00001.m4s?token={valid}" in await response.text()
    response = await api_client.get(urls[1], params={"token": valid})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "private, max-age=86400, immutable"
    assert await response.read() == SEGMENT


async def test_a_signed_live_stream_plays_only_with_a_valid_token(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    stream = await create_stream(api_client, account, latencyMode="standard")  # files on disk
    await go_live(api_client, stream["id"])
    directory = app_settings.live_dir / stream["id"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.m3u8").write_bytes(PLAYLIST)
    (directory / "seg_00001.m4s").write_bytes(SEGMENT)
    playlist, segment = (f"/live/{stream['id']}/{n}" for n in ("index.m3u8", "seg_00001.m4s"))

    # Public: as before, no token needed, shared caches welcome.
    assert (await api_client.get(playlist)).status == 200
    response = await api_client.get(segment)
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"

    # Signed while live: applies at once.
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}",
        json={"playbackPolicy": "signed"},
        headers=account.headers,
    )
    assert response.status == 200
    await assert_forbidden(await api_client.get(playlist))
    await assert_forbidden(await api_client.get(segment))
    key = await new_key(api_client, account)
    token = issue_playback_token(stream["id"], key["id"], key["privateKey"], 600)
    response = await api_client.get(playlist, params={"token": token})
    assert response.status == 200
    assert f"seg_00001.m4s?token={token}" in await response.text()
    response = await api_client.get(segment, params={"token": token})
    assert response.status == 200

    # The key deleted mid-stream: no new playlist with its tokens.
    await api_client.delete(f"/v1/signing-keys/{key['id']}", headers=account.headers)
    await assert_forbidden(await api_client.get(playlist, params={"token": token}))


async def test_a_key_deleted_on_another_node_is_refused_within_the_key_ttl(
    api_client: TestClient, account: AccountCredentials
) -> None:
    """Node A caches the key; node B (the app) deletes it; A refuses once the key's TTL is
    over, having answered from its cache until then."""
    stream = await create_stream(api_client, account, playbackPolicy="signed")
    key = await new_key(api_client, account)
    token = issue_playback_token(stream["id"], key["id"], key["privateKey"], 600)
    now = [time.time()]
    node_a = PlaybackGuard(api_client.app[DB_SESSIONMAKER], clock=lambda: now[0], key_ttl=5.0)
    assert await node_a.check(stream["id"], token) is True

    response = await api_client.delete(f"/v1/signing-keys/{key['id']}", headers=account.headers)
    assert response.status == 200
    assert await node_a.check(stream["id"], token) is True  # within the bound: cached
    now[0] += 5.01
    with pytest.raises(Forbidden):
        await node_a.check(stream["id"], token)


async def test_the_playback_token_command_signs_a_token_the_server_accepts(
    api_client: TestClient,
    account: AccountCredentials,
    app_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = await create_stream(api_client, account, playbackPolicy="signed")
    recording_id = await recorded(api_client, stream["id"], app_settings)
    key = await new_key(api_client, account)
    key_file = tmp_path / "key.txt"
    key_file.write_text(key["privateKey"], encoding="ascii")
    argv = ["playback-token", "--stream", stream["id"], "--key-id", key["id"]]
    assert main([*argv, "--private-key", str(key_file), "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(token)["kid"] == key["id"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["aud"]) == (stream["id"], "v")
    assert 0 < claims["exp"] - time.time() <= 120
    url = f"/recordings/{recording_id}/index.m3u8"
    assert (await api_client.get(url, params={"token": token})).status == 200

    assert main([*argv, "--private-key", str(tmp_path / "missing.txt")]) == 2
    assert main([*argv, "--private-key", str(key_file), "--ttl", "0"]) == 2


async def test_refusals_log_the_reason_rate_limited_and_never_the_token(
    api_client: TestClient, account: AccountCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    stream = await create_stream(api_client, account, playbackPolicy="signed")
    key = await new_key(api_client, account)
    expired = issue_playback_token(stream["id"], key["id"], key["privateKey"], 60, now=0)
    guard = PlaybackGuard(api_client.app[DB_SESSIONMAKER])
    with caplog.at_level("WARNING", logger="api.playback_tokens"):
        for _ in range(3):
            with pytest.raises(Forbidden):
                await guard.check(stream["id"], expired)
    messages = [r.getMessage() for r in caplog.records if r.name == "api.playback_tokens"]
    assert messages == [f"playback of stream {stream['id']} refused: expired token"]
    assert expired not in caplog.text


class BreakableSessions:
    """The app's sessionmaker until :attr:`broken`; then every session fails as an unreachable
    database does."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.broken = False

    def __call__(self) -> AsyncSession:
        if self.broken:
            raise ConnectionResetError("database unreachable")
        return self._sessions()


async def test_a_database_outage_keeps_what_the_guard_knew(
    api_client: TestClient, account: AccountCredentials
) -> None:
    """Live streams go on while the database is away, and so does their playback: policies
    and keys already read stay in force past their TTL until the database answers again. What
    was never read cannot be decided: the database error goes to the caller (a 503)."""
    public = await create_stream(api_client, account)
    signed = await create_stream(api_client, account, playbackPolicy="signed")
    key = await new_key(api_client, account)
    token = issue_playback_token(signed["id"], key["id"], key["privateKey"], 600)
    now = [time.time()]
    sessions = BreakableSessions(api_client.app[DB_SESSIONMAKER])
    guard = PlaybackGuard(sessions, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await guard.check(public["id"], None) is False
    assert await guard.check(signed["id"], token) is True

    sessions.broken = True
    now[0] += 60.0  # every cached policy and key past its TTL
    assert await guard.check(public["id"], None) is False
    assert await guard.check(signed["id"], token) is True
    with pytest.raises(Forbidden):
        await guard.check(signed["id"], None)
    other = await create_stream(api_client, account)
    with pytest.raises(ConnectionResetError):
        await guard.check(other["id"], None)
