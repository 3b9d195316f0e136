"""A stream's life through the operator API, on both databases: reset its key, disable and
enable it, complete its session; ``status`` and ``currentSession``; the session limits that
reach the ingest through the publish grant."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import AUTHORIZER, DB_SESSIONMAKER, PATHS
from api.models import LiveStream
from ingest.authorizer import PublishDenied
from tests.api.conftest import (
    HEX24,
    TIMESTAMP,
    UUID4,
    AccountCredentials,
    assert_error,
    create_stream,
    go_live,
)
from tests.api.spec_support import check, fetch_document


async def post(client: TestClient, account: AccountCredentials, path: str) -> dict[str, Any]:
    response = await client.post(path, headers=account.headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def get_stream(
    client: TestClient, account: AccountCredentials, stream_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/livestreams/{stream_id}", headers=account.headers)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_reset_stream_key_refuses_the_old_key_and_ends_its_publish(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    publisher = await go_live(api_client, stream["id"])
    url = f"/v1/livestreams/{stream['id']}"

    reset = await post(api_client, account, f"{url}/reset-stream-key")
    assert UUID4.match(reset["streamKey"]) and reset["streamKey"] != stream["streamKey"]
    assert reset["upstreamUrl"] == f"rtmp://testserver/live/{reset['streamKey']}"
    assert reset["downstreamUrl"] == stream["downstreamUrl"]
    assert (reset["status"], reset["currentSession"]) == ("idle", None)
    assert reset["updatedAt"] >= stream["updatedAt"]
    assert publisher.ended == ["reset"]
    assert publisher.path.ended.is_set()
    assert await get_stream(api_client, account, stream["id"]) == reset

    authorizer = api_client.app[AUTHORIZER]
    with pytest.raises(PublishDenied, match="unknown stream key"):
        await authorizer.authorize_publish(stream["streamKey"], "198.51.100.1:1000")
    grant = await authorizer.authorize_publish(reset["streamKey"], "198.51.100.1:1000")
    assert grant.stream_id == stream["id"]


async def test_reset_stream_key_of_an_idle_stream(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    first = await post(api_client, account, f"/v1/livestreams/{stream['id']}/reset-stream-key")
    second = await post(api_client, account, f"/v1/livestreams/{stream['id']}/reset-stream-key")
    assert len({stream["streamKey"], first["streamKey"], second["streamKey"]}) == 3


async def test_disable_refuses_publishes_and_ends_the_session_enable_undoes_it(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    publisher = await go_live(api_client, stream["id"])
    url = f"/v1/livestreams/{stream['id']}"
    authorizer = api_client.app[AUTHORIZER]

    disabled = await post(api_client, account, f"{url}/disable")
    assert (disabled["status"], disabled["currentSession"]) == ("disabled", None)
    assert disabled["streamKey"] == stream["streamKey"]
    assert publisher.ended == ["disabled"]
    with pytest.raises(PublishDenied, match="stream is disabled"):
        await authorizer.authorize_publish(stream["streamKey"], "198.51.100.1:1000")

    again = await post(api_client, account, f"{url}/disable")
    assert again == disabled  # idempotent: not even updatedAt moves
    assert publisher.ended == ["disabled"]
    assert (await get_stream(api_client, account, stream["id"]))["status"] == "disabled"

    enabled = await post(api_client, account, f"{url}/enable")
    assert enabled["status"] == "idle"
    assert enabled["updatedAt"] >= disabled["updatedAt"]
    assert await post(api_client, account, f"{url}/enable") == enabled
    grant = await authorizer.authorize_publish(stream["streamKey"], "198.51.100.1:1000")
    assert grant.stream_id == stream["id"]


async def test_disabled_status_wins_over_a_live_session(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    await go_live(api_client, stream["id"])
    async with api_client.app[DB_SESSIONMAKER]() as session, session.begin():
        row = await session.get(LiveStream, stream["id"])
        assert row is not None
        row.disabled = True  # as if disabled by another node while live here
    shown = await get_stream(api_client, account, stream["id"])
    assert shown["status"] == "disabled"
    assert shown["currentSession"] is not None


async def test_complete_ends_the_live_session_and_is_harmless_when_idle(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    publisher = await go_live(api_client, stream["id"])
    url = f"/v1/livestreams/{stream['id']}"

    completed = await post(api_client, account, f"{url}/complete")
    assert (completed["status"], completed["currentSession"]) == ("idle", None)
    assert completed["streamKey"] == stream["streamKey"]
    assert publisher.ended == ["completed"]
    assert publisher.path.ended.is_set()

    assert await post(api_client, account, f"{url}/complete") == completed
    grant = await api_client.app[AUTHORIZER].authorize_publish(stream["streamKey"], "c")
    assert grant.stream_id == stream["id"]  # complete does not keep the encoder out


async def test_complete_ends_a_session_waiting_in_its_reconnect_window(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, reconnectWindowSeconds=600)
    publisher = await go_live(api_client, stream["id"])
    await publisher.path.leave(publisher, clean=False, reason="timed_out")  # it dropped

    waiting = await get_stream(api_client, account, stream["id"])
    assert waiting["status"] == "live"
    assert waiting["currentSession"]["reconnecting"] is True

    completed = await post(api_client, account, f"/v1/livestreams/{stream['id']}/complete")
    assert (completed["status"], completed["currentSession"]) == ("idle", None)
    assert publisher.path.ended.is_set()
    assert api_client.app[PATHS].get(stream["id"]) is None


async def test_current_session_while_live(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    publisher = await go_live(api_client, stream["id"], "203.0.113.9:41000")
    document = await fetch_document(api_client)

    shown = await get_stream(api_client, account, stream["id"])
    check(shown, {"$ref": "#/components/schemas/LiveStreamOutput"}, document)
    assert shown["status"] == "live"
    current = shown["currentSession"]
    assert HEX24.match(current["id"]) and current["id"] == publisher.path.info.session_id
    assert TIMESTAMP.match(current["startedAt"])
    assert current["clientAddress"] == "203.0.113.9:41000"
    assert current["reconnecting"] is False
    assert current["bytesIn"] == 0
    assert all(
        set(o) == {"name", "state", "droppedFrames", "lastError"} for o in current["outputs"]
    )

    response = await api_client.get("/v1/livestreams", headers=account.headers)
    listed = (await response.json())["data"]
    assert listed == [shown]


async def test_session_limits_default_are_set_and_reach_the_grant(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(
        api_client, account, reconnectWindowSeconds=0, maxDurationSeconds=60
    )
    assert (stream["reconnectWindowSeconds"], stream["maxDurationSeconds"]) == (0, 60)
    authorizer = api_client.app[AUTHORIZER]
    grant = await authorizer.authorize_publish(stream["streamKey"], "c")
    assert (grant.reconnect_window_seconds, grant.max_duration_seconds) == (0.0, 60.0)

    url = f"/v1/livestreams/{stream['id']}"
    response = await api_client.patch(
        url, json={"reconnectWindowSeconds": 1800}, headers=account.headers
    )
    patched = await response.json()
    assert (patched["reconnectWindowSeconds"], patched["maxDurationSeconds"]) == (1800, 60)
    response = await api_client.post(
        url, json={"maxDurationSeconds": 43200}, headers=account.headers
    )
    posted = await response.json()
    assert (posted["reconnectWindowSeconds"], posted["maxDurationSeconds"]) == (1800, 43200)
    grant = await authorizer.authorize_publish(stream["streamKey"], "c")
    assert (grant.reconnect_window_seconds, grant.max_duration_seconds) == (1800.0, 43200.0)


async def test_session_limits_take_integral_json_numbers(
    api_client: TestClient, account: AccountCredentials
) -> None:
    """JSON Schema's ``integer`` includes ``600.0`` (found by Schemathesis: it was a 400)."""
    stream = await create_stream(
        api_client, account, reconnectWindowSeconds=600.0, maxDurationSeconds=3600.0
    )
    assert (stream["reconnectWindowSeconds"], stream["maxDurationSeconds"]) == (600, 3600)
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}",
        json={"reconnectWindowSeconds": 0.0},
        headers=account.headers,
    )
    assert (await response.json())["reconnectWindowSeconds"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reconnectWindowSeconds", -1),
        ("reconnectWindowSeconds", 1801),
        ("reconnectWindowSeconds", 1.5),
        ("reconnectWindowSeconds", 1e300),
        ("reconnectWindowSeconds", float("nan")),
        ("reconnectWindowSeconds", "60"),
        ("reconnectWindowSeconds", True),
        ("reconnectWindowSeconds", None),
        ("maxDurationSeconds", 59),
        ("maxDurationSeconds", 43201),
        ("maxDurationSeconds", 0),
        ("maxDurationSeconds", "3600"),
    ],
)
async def test_session_limits_out_of_bounds_are_refused(
    api_client: TestClient, account: AccountCredentials, field: str, value: object
) -> None:
    response = await api_client.post(
        "/v1/livestreams", json={"name": "x", field: value}, headers=account.headers
    )
    await assert_error(response, 400, "validation_error", [field])
    stream = await create_stream(api_client, account)
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}", json={field: value}, headers=account.headers
    )
    await assert_error(response, 400, "validation_error", [field])


async def test_actions_on_unknown_or_malformed_ids_are_404(
    api_client: TestClient, account: AccountCredentials
) -> None:
    for action in ("reset-stream-key", "disable", "enable", "complete"):
        for stream_id in ("0" * 24, "nope"):
            response = await api_client.post(
                f"/v1/livestreams/{stream_id}/{action}", headers=account.headers
            )
            await assert_error(response, 404, "not_found")
