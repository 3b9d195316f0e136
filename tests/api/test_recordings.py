"""``/v1/livestreams/{id}/recordings`` and recording playback, on SQLite and PostgreSQL.

Recording rows and files are made directly (as a live path would) so these tests need no
publisher; the end-to-end tests record real sessions.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient

from config import Settings
from tests.api.conftest import (
    HEX24,
    TIMESTAMP,
    AccountCredentials,
    MakeAccount,
    assert_error,
    create_stream,
)
from tests.api.recording_support import SEGMENT, T0, add_recording
from tests.api.spec_support import assert_matches_spec, fetch_document


async def test_recordings_are_listed_newest_first(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, record=True)
    path = f"/v1/livestreams/{stream['id']}/recordings"
    response = await api_client.get(path, headers=account.headers)
    assert response.status == 200
    assert await response.json() == {
        "pageInfo": {"currentPage": 1, "perPage": 100, "lastPage": 1},
        "data": [],
    }

    old = await add_recording(api_client, stream["id"], started=T0)
    new = await add_recording(api_client, stream["id"], started=T0 + timedelta(hours=1))
    failed = await add_recording(
        api_client, stream["id"], started=T0 + timedelta(hours=2), status="failed", segments=()
    )
    body = await (await api_client.get(path, headers=account.headers)).json()
    assert [r["id"] for r in body["data"]] == [failed, new, old]
    first = body["data"][1]
    assert set(first) == {
        "id",
        "startedAt",
        "endedAt",
        "duration",
        "bytes",
        "status",
        "error",
        "recordingUrl",
    }
    assert HEX24.match(first["id"]) and TIMESTAMP.match(first["startedAt"])
    assert first["startedAt"] == "2026-01-02T04:04:05.000Z"
    assert first["endedAt"] == "2026-01-02T04:04:09.000Z"
    assert (first["duration"], first["bytes"], first["status"]) == (4.0, 752, "ready")
    assert first["error"] is None
    assert first["recordingUrl"] == f"http://testserver/recordings/{new}/index.m3u8"
    assert body["data"][0]["status"] == "failed" and body["data"][0]["error"]


async def test_recordings_are_paged_like_sessions(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, record=True)
    ids = [
        await add_recording(api_client, stream["id"], started=T0 + timedelta(minutes=i))
        for i in range(5)
    ]
    path = f"/v1/livestreams/{stream['id']}/recordings"
    seen = []
    for page in (1, 2, 3):
        response = await api_client.get(f"{path}?page={page}&perPage=2", headers=account.headers)
        body = await response.json()
        assert body["pageInfo"] == {"currentPage": page, "perPage": 2, "lastPage": 3}
        seen += [r["id"] for r in body["data"]]
    assert seen == ids[::-1]
    body = await (await api_client.get(path, headers=account.headers)).json()
    assert body["pageInfo"] == {"currentPage": 1, "perPage": 100, "lastPage": 1}
    assert [r["id"] for r in body["data"]] == ids[::-1]
    for query, field in [("perPage=0", "perPage"), ("perPage=101", "perPage"), ("page=x", "page")]:
        response = await api_client.get(f"{path}?{query}", headers=account.headers)
        await assert_error(response, 400, "validation_error", [field])


async def test_recordings_of_other_accounts_and_unknown_streams_are_404(
    api_client: TestClient, account: AccountCredentials, make_account: MakeAccount
) -> None:
    stream = await create_stream(api_client, account)
    recording = await add_recording(api_client, stream["id"], started=T0)
    stranger = await make_account("stranger")
    for path in (
        f"/v1/livestreams/{stream['id']}/recordings",
        f"/v1/livestreams/{'0' * 24}/recordings",
        "/v1/livestreams/not-an-id/recordings",
    ):
        response = await api_client.get(path, headers=stranger.headers)
        await assert_error(response, 404, "not_found")
    delete = f"/v1/livestreams/{stream['id']}/recordings/{recording}"
    await assert_error(await api_client.delete(delete, headers=stranger.headers), 404, "not_found")
    await assert_error(
        await api_client.get(f"/v1/livestreams/{stream['id']}/recordings"), 401, "unauthorized"
    )


async def test_delete_removes_the_recording_and_its_files(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    stream = await create_stream(api_client, account, record=True)
    keep = await add_recording(api_client, stream["id"], started=T0)
    gone = await add_recording(api_client, stream["id"], started=T0 + timedelta(minutes=5))
    base = f"/v1/livestreams/{stream['id']}/recordings"

    response = await api_client.delete(f"{base}/{gone}", headers=account.headers)
    assert response.status == 200
    assert (await response.json())["id"] == gone
    assert not (app_settings.recordings_dir / gone).exists()
    assert (app_settings.recordings_dir / keep / "s-1-0.ts").exists()
    listing = await (await api_client.get(base, headers=account.headers)).json()
    assert [r["id"] for r in listing["data"]] == [keep]
    await assert_error(await api_client.get(f"/recordings/{gone}/index.m3u8"), 404, "not_found")

    for missing in (gone, "f" * 24, "NOT-AN-ID"):
        response = await api_client.delete(f"{base}/{missing}", headers=account.headers)
        await assert_error(response, 404, "not_found")
    other = await create_stream(api_client, account)
    response = await api_client.delete(
        f"/v1/livestreams/{other['id']}/recordings/{keep}", headers=account.headers
    )
    await assert_error(response, 404, "not_found")  # not that stream's recording


async def test_recording_url_plays_the_latest_recording(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, record=True)
    url = f"/live/{stream['id']}/storage/index.m3u8"
    await assert_error(await api_client.get(url), 404, "not_found")

    await add_recording(api_client, stream["id"], started=T0)
    latest = await add_recording(
        api_client, stream["id"], started=T0 + timedelta(hours=1), segments=("n-1-0.ts",)
    )
    await add_recording(  # a newer failed one has nothing to play: it is skipped
        api_client, stream["id"], started=T0 + timedelta(hours=2), status="failed", segments=()
    )
    response = await api_client.get(url)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "no-cache"
    text = await response.text()
    segment_url = f"http://testserver/recordings/{latest}/n-1-0.ts"
    assert [line for line in text.splitlines() if not line.startswith("#")] == [segment_url]
    assert text.endswith("#EXT-X-ENDLIST\n")
    segment = await api_client.get(segment_url.removeprefix("http://testserver"))
    assert segment.status == 200 and await segment.read() == SEGMENT

    await api_client.delete(f"/v1/livestreams/{stream['id']}", headers=account.headers)
    await assert_error(await api_client.get(url), 404, "not_found")


async def test_recording_responses_match_the_spec(
    api_client: TestClient, account: AccountCredentials
) -> None:
    document = await fetch_document(api_client)
    stream = await create_stream(api_client, account, record=True)
    recording = await add_recording(api_client, stream["id"], started=T0)
    base = f"/v1/livestreams/{stream['id']}/recordings"
    listing = "/v1/livestreams/{id}/recordings"
    item = "/v1/livestreams/{id}/recordings/{recordingId}"
    response = await api_client.get(base, headers=account.headers)
    await assert_matches_spec(document, "get", listing, response)
    response = await api_client.delete(f"{base}/{recording}", headers=account.headers)
    await assert_matches_spec(document, "delete", item, response)
    response = await api_client.delete(f"{base}/{recording}", headers=account.headers)
    await assert_matches_spec(document, "delete", item, response)
    await assert_matches_spec(document, "get", listing, await api_client.get(base))
