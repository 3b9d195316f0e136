"""``GET /openapi.json``: an OpenAPI 3.1 document of every route.

Body schemas are generated from the pydantic models in :mod:`api.schemas` (which the handlers
validate and serialise with); paths are written here and, for ``/v1/livestreams``, in
:mod:`api.openapi.livestreams`. ``tests/api/test_openapi.py`` checks
that the document and the router list the same operations.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from api.openapi.console import console_paths
from api.openapi.livestreams import LIVESTREAM_MODELS, livestream_paths
from api.openapi.parts import REF, errors, id_param, json_response, query_param
from api.openapi.signing_keys import SIGNING_KEY_MODELS, signing_key_paths
from api.openapi.thumbnails import thumbnail_paths
from api.openapi.webhooks import WEBHOOK_MODELS, webhook_events, webhook_paths
from api.schemas.livestreams import ErrorOutput, HealthOutput, ReadinessOutput
from config import Settings


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
                },
                "consoleSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "liverelay_console",
                    "description": "The console's session (POST /console/session); accepted by "
                    "/v1 in place of `Authorization`, with `X-Liverelay-Console: 1` on requests "
                    "that change anything.",
                },
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "LIVERELAY_METRICS_TOKEN, for GET /metrics on this port.",
                },
            },
        },
        "paths": _paths(settings),
        "webhooks": webhook_events(),
    }


def component_schemas() -> dict[str, Any]:
    """JSON Schemas (2020-12) of every body, keyed by model name."""
    _, top = models_json_schema(
        [
            *LIVESTREAM_MODELS,
            (ErrorOutput, "serialization"),
            (HealthOutput, "serialization"),
            (ReadinessOutput, "serialization"),
            *WEBHOOK_MODELS,
            *SIGNING_KEY_MODELS,
        ],
        by_alias=True,
        ref_template=REF,
    )
    return dict(top["$defs"])


def _version() -> str:
    try:
        return metadata.version("liverelay")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _paths(settings: Settings) -> dict[str, Any]:
    # /metrics is on the public port only behind LIVERELAY_METRICS_TOKEN (api.metrics.listener)
    metrics = {"/metrics": {"get": _metrics()}} if settings.metrics_token is not None else {}
    return {
        "/healthz": {"get": _health()},
        "/readyz": {"get": _readiness()},
        **metrics,
        "/openapi.json": {"get": _self_description()},
        **livestream_paths(),
        **webhook_paths(),
        **signing_key_paths(),
        **_playback(),
        **thumbnail_paths(),
        **console_paths(),
    }


def _health() -> dict[str, Any]:
    return {
        "operationId": "healthz",
        "summary": "Liveness",
        "responses": {"200": json_response("The server is up", "HealthOutput")},
    }


def _readiness() -> dict[str, Any]:
    return {
        "operationId": "readyz",
        "summary": "Readiness: database reachable, ffmpeg found, storage writable",
        "responses": {
            "200": json_response("Ready to serve", "ReadinessOutput"),
            "503": json_response(
                "A dependency is failing (see `checks`), or the node is draining "
                "(`status: draining`, no checks)",
                "ReadinessOutput",
            ),
        },
    }


def _metrics() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "summary": "Prometheus metrics (names prefixed liverelay_)",
        "description": "Served here only when LIVERELAY_METRICS_TOKEN is set, to requests "
        "with `Authorization: Bearer <token>`. The metrics listener "
        "(LIVERELAY_METRICS_HOST/PORT) serves it without a token.",
        "security": [{"metricsToken": []}],
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **errors(401),
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


def _query(name: str, description: str) -> dict[str, Any]:
    """An optional non-negative integer query parameter."""
    schema = {"type": "string", "pattern": "^[0-9]{1,18}$"}
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _playback() -> dict[str, Any]:
    segment = {
        "name": "segment",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,128}\.(ts|m4s|mp4|aac)$"},
    }

    token = query_param(
        "token",
        {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$"},
        "A signed stream's playback token (RS256 JWT: header `kid` = a signing key id; claims "
        "`sub` = the stream id, `aud` = `v`, `exp`); its playlists carry it in every URI",
    )

    def item(
        op_id: str,
        summary: str,
        media_type: str,
        with_segment: bool,
        by_recording: bool = False,
        more: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        params = [
            id_param("Recording id", "recordingId")
            if by_recording
            else id_param("Live stream id (never the stream key)")
        ]
        if with_segment:
            params.append(segment)
        params.append(token)
        ok = {"description": summary, "content": {media_type: {"schema": {"type": "string"}}}}
        responses = {"200": ok, **errors(403, 404), **(more or {})}
        get = {"operationId": op_id, "summary": summary, "responses": responses}
        head = {**get, "operationId": f"{op_id}Head"}
        return {"parameters": params, "get": get, "head": head}

    playlist = "application/vnd.apple.mpegurl"
    on_disk = {
        "502": json_response(
            "On local disk: the recording is on another node's disk, and that node cannot be "
            "reached (code `recording_node_unreachable`)",
            "ErrorOutput",
        ),
        "503": json_response(
            "Object storage (s3://...) unreachable; or, on local disk, the recording is on the "
            "disk of a node that is not running (code `recording_node_unavailable`)",
            "ErrorOutput",
        ),
    }
    redirect = {"302": {"description": "In object storage: redirect to a presigned URL"}}
    live_playlist = item(
        "livePlaylist",
        "Live HLS playlist (a stream in low-latency mode: low-latency HLS, RFC 8216bis)",
        playlist,
        False,
        more={
            **errors(
                400,
                502,
                e400="Low-latency mode: `_HLS_msn`/`_HLS_part` further ahead than the playlist "
                "may block for, or malformed",
            ),
            "503": json_response(
                "Low-latency mode: the part a blocking reload waited for did not come within "
                "three target durations",
                "ErrorOutput",
            ),
        },
    )
    live_playlist["parameters"] += [
        _query("_HLS_msn", "Low-latency mode: block until the playlist holds this segment"),
        _query("_HLS_part", "Low-latency mode: with `_HLS_msn`, block until it holds this part"),
        {
            "name": "_HLS_skip",
            "in": "query",
            "required": False,
            "description": "Low-latency mode: a delta update (`YES` or `v2`)",
            "schema": {"type": "string", "enum": ["YES", "v2"]},
        },
    ]
    live_segment = item(
        "liveSegment",
        "Live HLS segment: MPEG-TS; in low-latency mode an fMP4 initialization segment "
        "(`<tag>-init-<n>.mp4`, video/mp4), part (`<tag>-part-<n>.m4s`) or segment "
        "(`<tag>-seg-<msn>.m4s`, video/iso.segment), where the tag is the session's, so no "
        "later session reuses a name; the hinted part is answered once it exists",
        "video/mp2t",
        True,
        more=errors(502),
    )
    multivariant = item(
        "liveMultivariantPlaylist",
        "Low-latency mode: a multivariant playlist whose one variant is the stream's "
        "`index.m3u8`, with the `CODECS` (RFC 6381, from the initialization segment: `avc1`, "
        "`hvc1`, `av01`, `mp4a.40.2`...), `RESOLUTION` and peak `BANDWIDTH` of its media; "
        "404 while the stream is not live in low-latency mode",
        playlist,
        False,
        more=errors(502),
    )
    return {
        "/live/{id}/index.m3u8": live_playlist,
        "/live/{id}/multivariant.m3u8": multivariant,
        "/live/{id}/{segment}": live_segment,
        "/live/{id}/storage/index.m3u8": item(
            "latestRecordingPlaylist",
            "HLS playlist of the stream's latest recording (segments under /recordings/)",
            playlist,
            False,
            more=on_disk,
        ),
        "/recordings/{recordingId}/index.m3u8": item(
            "recordingPlaylist",
            "A recording's HLS playlist (EVENT while live, then VOD)",
            playlist,
            False,
            True,
            more=on_disk,
        ),
        "/recordings/{recordingId}/{segment}": item(
            "recordingSegment",
            "Recorded HLS segment: MPEG-TS; of a low-latency stream an fMP4 segment "
            "(`<tag>-<msn>.m4s`, video/iso.segment) or its initialization segment "
            "(`<tag>-init<n>.mp4`, video/mp4, named by `EXT-X-MAP`)",
            "video/mp2t",
            True,
            True,
            more={**redirect, **on_disk},
        ),
    }
