"""``GET /v1/livestreams/{id}/sessions``: a stream's session history, newest first, paged, on
both databases. The rows are written here the way the media side writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient

from api.keys import DB_SESSIONMAKER
from api.models import LiveSession, new_object_id
from tests.api.conftest import TIMESTAMP, AccountCredentials, assert_error, create_stream
from tests.api.spec_support import assert_matches_spec, fetch_document

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


async def add_session(
    client: TestClient,
    stream_id: str,
    started: datetime,
    seconds: float | None,
    reason: str | None = "publisher_left",
) -> str:
    row = LiveSession(
        id=new_object_id(),
        live_stream_id=stream_id,
        started_at=started,
        ended_at=started + timedelta(seconds=seconds) if seconds is not None else None,
        end_reason=reason if seconds is not None else None,
        client_address="198.51.100.4:50123",
        reconnects=2,
        bytes_in=123_456_789_012,
    )
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        session.add(row)
    return row.id


async def test_sessions_newest_first_with_duration(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    old = await add_session(api_client, stream["id"], T0, 3600.25, "completed")
    live = await add_session(api_client, stream["id"], T0 + timedelta(hours=2), None)
    other = await create_stream(api_client, account)
    await add_session(api_client, other["id"], T0 + timedelta(hours=1), 5)

    url = f"/v1/livestreams/{stream['id']}/sessions"
    document = await fetch_document(api_client)
    response = await api_client.get(url, headers=account.headers)
    body = await assert_matches_spec(document, "get", "/v1/livestreams/{id}/sessions", response)
    assert body["pageInfo"] == {"currentPage": 1, "perPage": 20, "lastPage": 1}
    assert [s["id"] for s in body["data"]] == [live, old]
    current, ended = body["data"]
    assert current == {
        "id": live,
        "startedAt": "2026-03-01T14:00:00.000Z",
        "endedAt": None,
        "duration": None,
        "endReason": None,
        "clientAddress": "198.51.100.4:50123",
        "reconnects": 2,
        "bytesIn": 123_456_789_012,
    }
    assert ended["endedAt"] == "2026-03-01T13:00:00.250Z"
    assert TIMESTAMP.match(ended["startedAt"])
    assert ended["duration"] == 3600.25
    assert ended["endReason"] == "completed"


async def test_sessions_are_paged(api_client: TestClient, account: AccountCredentials) -> None:
    stream = await create_stream(api_client, account)
    ids = [
        await add_session(api_client, stream["id"], T0 + timedelta(minutes=i), 30) for i in range(5)
    ]
    url = f"/v1/livestreams/{stream['id']}/sessions"
    seen = []
    for page in (1, 2, 3):
        response = await api_client.get(f"{url}?page={page}&perPage=2", headers=account.headers)
        body = await response.json()
        assert body["pageInfo"] == {"currentPage": page, "perPage": 2, "lastPage": 3}
        seen += [s["id"] for s in body["data"]]
    assert seen == ids[::-1]
    response = await api_client.get(f"{url}?perPage=0", headers=account.headers)
    await assert_error(response, 400, "validation_error", ["perPage"])


async def test_a_stream_without_sessions(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    response = await api_client.get(
        f"/v1/livestreams/{stream['id']}/sessions", headers=account.headers
    )
    assert await response.json() == {
        "pageInfo": {"currentPage": 1, "perPage": 20, "lastPage": 1},
        "data": [],
    }
    response = await api_client.get(f"/v1/livestreams/{'0' * 24}/sessions", headers=account.headers)
    await assert_error(response, 404, "not_found")
