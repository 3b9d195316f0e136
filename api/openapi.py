"""``GET /openapi.json``: an OpenAPI 3.1 document of every route.

Body schemas are generated from the pydantic models in :mod:`api.schemas` (which the handlers
validate and serialise with); paths are written here. ``tests/api/test_openapi.py`` checks that
the document and the router list the same operations.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from api.routes.livestreams import DEFAULT_PER_PAGE, MAX_PER_PAGE
from api.schemas import (
    ErrorOutput,
    HealthOutput,
    LiveStreamCreate,
    LiveStreamOutput,
    LiveStreamPage,
    LiveStreamUpdate,
    ReadinessOutput,
    RecordingList,
    RecordingOutput,
)
from config import Settings

_REF = "#/components/schemas/{model}"


def register(router: web.UrlDispatcher, settings: Settings) -> None:
    """Add ``GET /openapi.json`` serving the document built for ``settings``."""
    document = build_document(settings)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    router.add_get("/openapi.json", openapi_json, allow_head=False)


def build_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "liverelay",
            "version": _version(),
            "description": "Create live streams, publish over RTMP, play over HLS.",
        },
        "servers": [{"url": settings.http_base_url()}],
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "jwt": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "HS256 JWT with an `apikey` claim, signed with the "
                    "account's secret; raw or as `Bearer <jwt>`.",
                }
            },
        },
        "paths": _paths(),
    }


def component_schemas() -> dict[str, Any]:
    """JSON Schemas (2020-12) of every body, keyed by model name."""
    _, top = models_json_schema(
        [
            (LiveStreamCreate, "validation"),
            (LiveStreamUpdate, "validation"),
            (LiveStreamOutput, "serialization"),
            (LiveStreamPage, "serialization"),
            (ErrorOutput, "serialization"),
            (HealthOutput, "serialization"),
            (RecordingOutput, "serialization"),
            (RecordingList, "serialization"),
            (ReadinessOutput, "serialization"),
        ],
        by_alias=True,
        ref_template=_REF,
    )
    return dict(top["$defs"])


def _version() -> str:
    try:
        return metadata.version("liverelay")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _ref(model: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=model)}


def _json(description: str, model: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Invalid request (see `details`)",
        401: "Missing or invalid token",
        404: "Not found (or another account's)",
        409: "Conflicts with the current state (see `code`)",
        413: "Request body too large",
    }
    return {str(status): _json(texts[status], "ErrorOutput") for status in statuses}


def _id_param(description: str) -> dict[str, Any]:
    schema = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _paths() -> dict[str, Any]:
    return {
        "/healthz": {"get": _health()},
        "/readyz": {"get": _readiness()},
        "/metrics": {"get": _metrics()},
        "/openapi.json": {"get": _self_description()},
        "/v1/livestreams": {"get": _list(), "post": _create()},
        "/v1/livestreams/{id}": _item(),
        "/v1/livestreams/{id}/recordings": _recordings(),
        "/v1/livestreams/{id}/recordings/{recordingId}": _recording_item(),
        **_playback(),
    }


def _health() -> dict[str, Any]:
    return {
        "operationId": "healthz",
        "summary": "Liveness",
        "responses": {"200": _json("The server is up", "HealthOutput")},
    }


def _readiness() -> dict[str, Any]:
    return {
        "operationId": "readyz",
        "summary": "Readiness: database reachable, ffmpeg found, storage writable",
        "responses": {
            "200": _json("Ready to serve", "ReadinessOutput"),
            "503": _json("A dependency is failing (see `checks`)", "ReadinessOutput"),
        },
    }


def _metrics() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "summary": "Prometheus metrics (names prefixed liverelay_)",
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }


def _self_description() -> dict[str, Any]:
    return {
        "operationId": "openapi",
        "summary": "This document",
        "responses": {
            "200": {
                "description": "OpenAPI 3.1 document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }


def _list() -> dict[str, Any]:
    def page_param(name: str, default: int, maximum: int) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
        return {"name": name, "in": "query", "required": False, "schema": schema}

    return {
        "operationId": "listLiveStreams",
        "summary": "List the account's live streams, newest first",
        "security": [{"jwt": []}],
        "parameters": [
            page_param("page", 1, 1_000_000_000),
            page_param("perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE),
        ],
        "responses": {"200": _json("One page", "LiveStreamPage"), **_errors(400, 401)},
    }


def _create() -> dict[str, Any]:
    return {
        "operationId": "createLiveStream",
        "summary": "Create a live stream",
        "security": [{"jwt": []}],
        "requestBody": _body("LiveStreamCreate"),
        "responses": {
            "201": _json("The new live stream", "LiveStreamOutput"),
            **_errors(400, 401, 413),
        },
    }


def _item() -> dict[str, Any]:
    def operation(op_id: str, summary: str, body: str | None, ok: str) -> dict[str, Any]:
        op: dict[str, Any] = {
            "operationId": op_id,
            "summary": summary,
            "security": [{"jwt": []}],
            "responses": {"200": _json(ok, "LiveStreamOutput"), **_errors(401, 404)},
        }
        if body is not None:
            op["requestBody"] = _body(body)
            op["responses"].update(_errors(400, 413))
        return op

    update = "Change name, record and/or restream (replaces the list)"
    update_notes = (
        "Only the fields given change. A new `restream` list applies at once when the stream is "
        "live: added targets start relaying, removed or edited targets stop, untouched targets "
        "and the HLS output go on without a break. A new `record` value applies from the next "
        "live session (the current session keeps recording, or not, as it began)."
    )
    return {
        "parameters": [_id_param("Live stream id")],
        "get": operation("getLiveStream", "Get a live stream", None, "The live stream"),
        "patch": {
            **operation("updateLiveStream", update, "LiveStreamUpdate", "The updated stream"),
            "description": update_notes,
        },
        "post": {
            **operation("updateLiveStreamPost", update, "LiveStreamUpdate", "The updated stream"),
            "description": update_notes,
        },
        "delete": operation(
            "deleteLiveStream",
            "Delete a live stream and end its session",
            None,
            "The deleted live stream",
        ),
    }


def _recording_id_param() -> dict[str, Any]:
    return {**_id_param("Recording id"), "name": "recordingId"}


def _recordings() -> dict[str, Any]:
    return {
        "parameters": [_id_param("Live stream id")],
        "get": {
            "operationId": "listRecordings",
            "summary": "Every recording of the live stream, newest first",
            "description": "One recording per live session while `record` was true. A session "
            "that is live now has status `recording`, its size and duration grow and its "
            "`recordingUrl` is an HLS EVENT playlist; once the session ends it becomes a VOD "
            "playlist and the status `ready`. Recordings are kept after the live window is gone.",
            "security": [{"jwt": []}],
            "responses": {"200": _json("The recordings", "RecordingList"), **_errors(401, 404)},
        },
    }


def _recording_item() -> dict[str, Any]:
    return {
        "parameters": [_id_param("Live stream id"), _recording_id_param()],
        "delete": {
            "operationId": "deleteRecording",
            "summary": "Delete a recording and its files",
            "description": "Refused with 409 `recording_in_progress` while its session is live.",
            "security": [{"jwt": []}],
            "responses": {
                "200": _json("The deleted recording", "RecordingOutput"),
                **_errors(401, 404, 409),
            },
        },
    }


def _playback() -> dict[str, Any]:
    segment = {
        "name": "segment",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,128}\.(ts|m4s|mp4|aac)$"},
    }

    def item(
        op_id: str, summary: str, media_type: str, with_segment: bool, by_recording: bool = False
    ) -> dict[str, Any]:
        params = [
            _recording_id_param()
            if by_recording
            else _id_param("Live stream id (never the stream key)")
        ]
        if with_segment:
            params.append(segment)
        ok = {"description": summary, "content": {media_type: {"schema": {"type": "string"}}}}
        responses = {"200": ok, **_errors(404)}
        get = {"operationId": op_id, "summary": summary, "responses": responses}
        head = {**get, "operationId": f"{op_id}Head"}
        return {"parameters": params, "get": get, "head": head}

    playlist = "application/vnd.apple.mpegurl"
    return {
        "/live/{id}/index.m3u8": item("livePlaylist", "Live HLS playlist", playlist, False),
        "/live/{id}/{segment}": item("liveSegment", "Live HLS segment", "video/mp2t", True),
        "/live/{id}/storage/index.m3u8": item(
            "latestRecordingPlaylist",
            "HLS playlist of the stream's latest recording (segments under /recordings/)",
            playlist,
            False,
        ),
        "/recordings/{recordingId}/index.m3u8": item(
            "recordingPlaylist",
            "A recording's HLS playlist (EVENT while live, then VOD)",
            playlist,
            False,
            True,
        ),
        "/recordings/{recordingId}/{segment}": item(
            "recordingSegment", "Recorded HLS segment", "video/mp2t", True, True
        ),
    }
