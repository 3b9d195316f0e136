"""The ``/v1/livestreams`` part of the OpenAPI document: the stream resource, its lifecycle
actions, its restream targets, session history and recordings. Bodies refer to component schemas
generated from the models in :data:`LIVESTREAM_MODELS`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from api.openapi.parts import body, errors, id_param, json_response, query_param
from api.routes.livestreams import (
    DEFAULT_PER_PAGE,
    MAX_NAME_FILTER,
    MAX_PAGE,
    MAX_PER_PAGE,
    STATUS_FILTERS,
)
from api.schemas.livestreams import (
    MAX_RESTREAM_TARGETS,
    LiveStreamCreate,
    LiveStreamOutput,
    LiveStreamPage,
    LiveStreamUpdate,
    RecordingList,
    RecordingOutput,
)
from api.schemas.restream import RestreamTargetInput, RestreamTargetOutput, RestreamTargetUpdate
from api.schemas.sessions import SessionPage

LIVESTREAM_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (LiveStreamCreate, "validation"),
    (LiveStreamUpdate, "validation"),
    (RestreamTargetInput, "validation"),
    (RestreamTargetUpdate, "validation"),
    (LiveStreamOutput, "serialization"),
    (LiveStreamPage, "serialization"),
    (RestreamTargetOutput, "serialization"),
    (SessionPage, "serialization"),
    (RecordingOutput, "serialization"),
    (RecordingList, "serialization"),
]
"""Models whose schemas the live stream operations refer to."""

_JWT: list[dict[str, list[str]]] = [{"jwt": []}]
_STREAM_ID = id_param("Live stream id")


def livestream_paths() -> dict[str, Any]:
    """Every ``/v1/livestreams`` path item."""
    return {
        "/v1/livestreams": {"get": _list(), "post": _create()},
        "/v1/livestreams/{id}": _item(),
        **_actions(),
        "/v1/livestreams/{id}/restream": _restream(),
        "/v1/livestreams/{id}/restream/{targetId}": _restream_item(),
        "/v1/livestreams/{id}/sessions": _sessions(),
        "/v1/livestreams/{id}/recordings": _recordings(),
        "/v1/livestreams/{id}/recordings/{recordingId}": _recording_item(),
    }


def _operation(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict:
    return {
        "operationId": op_id,
        "summary": summary,
        "security": _JWT,
        **extra,
        "responses": responses,
    }


def _page_params() -> list[dict[str, Any]]:
    def page_param(name: str, default: int, maximum: int) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
        return query_param(name, schema, "1-based page number" if name == "page" else "Page size")

    return [page_param("page", 1, MAX_PAGE), page_param("perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE)]


_LIVE_ELSEWHERE = (
    "With several nodes, a stream live on another node than the one answering shows that "
    "node's live state (status, current session and relay states), asked once per node. When "
    "that node cannot be reached, the stream shows `live` (its lease says so) with "
    "`currentSession` null."
)


def _list() -> dict[str, Any]:
    status = query_param(
        "status",
        {"type": "string", "enum": list(STATUS_FILTERS)},
        "`disabled`: streams that refuse publishes. `live`: enabled streams with a live "
        "session (also inside a reconnect window), on whichever node; `idle`: the other "
        "enabled streams.",
    )
    ids = query_param(
        "id",
        {
            "type": "array",
            "items": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            "maxItems": MAX_PER_PAGE,
        },
        "Only these streams (repeat the parameter: `id=…&id=…`).",
    )
    name = query_param(
        "name",
        {"type": "string", "maxLength": MAX_NAME_FILTER, "pattern": "^[^\\x00]*$"},
        "Only streams whose name contains this text, ignoring case (ASCII letters on SQLite, "
        "the database's rules on PostgreSQL). Empty: no filter.",
    )
    return _operation(
        "listLiveStreams",
        "List the account's live streams, newest first",
        {"200": json_response("One page", "LiveStreamPage"), **errors(400, 401)},
        parameters=[*_page_params(), status, name, ids],
        description=_LIVE_ELSEWHERE,
    )


def _create() -> dict[str, Any]:
    return _operation(
        "createLiveStream",
        "Create a live stream",
        {
            "201": json_response("The new live stream", "LiveStreamOutput"),
            **errors(400, 401, 413),
        },
        requestBody=body("LiveStreamCreate"),
    )


def _item() -> dict[str, Any]:
    def operation(op_id: str, summary: str, with_body: bool, ok: str) -> dict[str, Any]:
        responses = {"200": json_response(ok, "LiveStreamOutput"), **errors(401, 404)}
        if not with_body:
            return _operation(op_id, summary, responses)
        responses.update(errors(400, 413))
        return _operation(
            op_id, summary, responses, requestBody=body("LiveStreamUpdate"), description=notes
        )

    update = "Change name, record, restream (replaces the list) and session limits"
    notes = (
        "Only the fields given change. A new `restream` list applies at once when the stream is "
        "live: added targets start relaying, removed or edited targets stop, untouched targets "
        "and the HLS output go on without a break. `record`, `reconnectWindowSeconds` and "
        "`maxDurationSeconds` apply from the next publish (the current session keeps what it "
        "began with). " + _LIVE_ELSEWHERE
    )
    get = operation("getLiveStream", "Get a live stream", False, "The live stream")
    get["responses"].update(errors(502))
    get["description"] = (
        "Asked on a node other than the one the stream is live on, the answer is that node's "
        "(its live status, current session and relay states)."
    )
    return {
        "parameters": [_STREAM_ID],
        "get": get,
        "patch": operation("updateLiveStream", update, True, "The updated stream"),
        "post": operation("updateLiveStreamPost", update, True, "The updated stream"),
        "delete": operation(
            "deleteLiveStream",
            "Delete a live stream, end its session and remove its recordings",
            False,
            "The deleted live stream",
        ),
    }


def _actions() -> dict[str, Any]:
    def action(op_id: str, summary: str, description: str) -> dict[str, Any]:
        responses = {"200": json_response("The live stream", "LiveStreamOutput")}
        return {
            "parameters": [_STREAM_ID],
            "post": _operation(
                op_id, summary, {**responses, **errors(401, 404)}, description=description
            ),
        }

    return {
        "/v1/livestreams/{id}/reset-stream-key": action(
            "resetStreamKey",
            "Give the stream a new stream key",
            "The old key is refused from now on, and a publisher using it is disconnected "
            "(its session ends with `endReason` `reset`). Playback URLs do not change.",
        ),
        "/v1/livestreams/{id}/disable": action(
            "disableLiveStream",
            "Refuse publishes to the stream",
            "A live publisher is disconnected (`endReason` `disabled`) and every publish is "
            "refused until the stream is enabled again; `status` is `disabled`. Idempotent.",
        ),
        "/v1/livestreams/{id}/enable": action(
            "enableLiveStream",
            "Accept publishes to the stream again",
            "Undoes `disable`. Idempotent. " + _LIVE_ELSEWHERE,
        ),
        "/v1/livestreams/{id}/complete": action(
            "completeLiveStream",
            "End the live session now",
            "Disconnects the publisher and ends the session without waiting for the reconnect "
            "window: the playlist ends with `EXT-X-ENDLIST` and the recording is closed "
            "(`endReason` `completed`). Answers 200 with the stream whether or not it was live, "
            "so a retried call is harmless. It does not stop an encoder from publishing again "
            "(that starts a new session); `disable` does.",
        ),
    }


def _restream() -> dict[str, Any]:
    limit = f"The stream already has {MAX_RESTREAM_TARGETS} targets (`restream_target_limit`)"
    return {
        "parameters": [_STREAM_ID],
        "post": _operation(
            "addRestreamTarget",
            "Add a restream target",
            {
                "201": json_response("The new target", "RestreamTargetOutput"),
                **errors(400, 401, 404, 409, 413, e409=limit),
            },
            requestBody=body("RestreamTargetInput"),
            description="Appended to the stream's `restream` list; while the stream is live it "
            f"starts relaying at once. At most {MAX_RESTREAM_TARGETS} targets per stream.",
        ),
    }


def _restream_item() -> dict[str, Any]:
    target_id = id_param("Restream target id (`_id`)", "targetId")
    return {
        "parameters": [_STREAM_ID, target_id],
        "patch": _operation(
            "updateRestreamTarget",
            "Change a restream target's url and/or streamKey",
            {
                "200": json_response("The updated target", "RestreamTargetOutput"),
                **errors(400, 401, 404, 413),
            },
            requestBody=body("RestreamTargetUpdate"),
            description="The target keeps its `_id`. While the stream is live, its relay "
            "restarts with the new url and key; the other targets are not touched.",
        ),
        "delete": _operation(
            "deleteRestreamTarget",
            "Remove a restream target",
            {
                "200": json_response("The removed target", "RestreamTargetOutput"),
                **errors(401, 404),
            },
            description="While the stream is live, its relay to this target stops at once.",
        ),
    }


def _sessions() -> dict[str, Any]:
    return {
        "parameters": [_STREAM_ID],
        "get": _operation(
            "listLiveSessions",
            "The stream's live sessions, newest first",
            {"200": json_response("One page", "SessionPage"), **errors(400, 401, 404)},
            parameters=_page_params(),
            description="One session per publish, from its start to its end; a publisher that "
            "reconnects inside `reconnectWindowSeconds` continues the same session. A session "
            "that is live has `endedAt`, `duration` and `endReason` null.",
        ),
    }


def _recordings() -> dict[str, Any]:
    return {
        "parameters": [_STREAM_ID],
        "get": _operation(
            "listRecordings",
            "Every recording of the live stream, newest first",
            {"200": json_response("The recordings", "RecordingList"), **errors(401, 404)},
            description="One recording per live session while `record` was true. A session "
            "that is live now has status `recording`, its size and duration grow and its "
            "`recordingUrl` is an HLS EVENT playlist; once the session ends it becomes a VOD "
            "playlist and the status `ready`. Recordings are kept after the live window is gone.",
        ),
    }


def _recording_item() -> dict[str, Any]:
    return {
        "parameters": [_STREAM_ID, id_param("Recording id", "recordingId")],
        "delete": _operation(
            "deleteRecording",
            "Delete a recording and its files",
            {
                "200": json_response("The deleted recording", "RecordingOutput"),
                **errors(401, 404, 409),
            },
            description="Refused with 409 `recording_in_progress` while its session is live.",
        ),
    }
