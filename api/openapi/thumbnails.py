"""The thumbnail operations of the OpenAPI document: a live stream's recent frame and a
recording's frame at a time, as JPEG or PNG (:mod:`api.routes.thumbnails`)."""

from __future__ import annotations

from typing import Any

from api.openapi.parts import errors, id_param, json_response, query_param
from workers.thumbnail_codec import FORMATS, MAX_SIDE, MIN_SIDE

_TOKEN = query_param(
    "token",
    {"type": "string"},
    "A signed stream's playback token, as for its playlists (`403` without a valid one)",
)
_SIDE = "in pixels ({min} to {max}); the other side follows the aspect ratio. With both `width` "
_SIDE += "and `height`, the frame is scaled to fit inside that box. Neither: the frame's own size"


def _side(name: str) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE}
    text = f"Scale the frame to this {name} " + _SIDE.format(min=MIN_SIDE, max=MAX_SIDE)
    return query_param(name, schema, text)


def thumbnail_paths() -> dict[str, Any]:
    """``/live/{id}/thumbnail.{jpg,png}`` and ``/recordings/{recordingId}/thumbnail.{jpg,png}``."""
    paths: dict[str, Any] = {}
    for extension, image_format in FORMATS.items():
        suffix = extension.capitalize()
        paths[f"/live/{{id}}/thumbnail.{extension}"] = _item(
            f"liveThumbnail{suffix}",
            "A recent frame of a live stream: the first frame (a keyframe) of its newest "
            "segment, decoded at most once every 5 s per stream, format and size "
            "(`Cache-Control: max-age=5`; `private` for a signed stream)",
            image_format.content_type,
            [id_param("Live stream id (never the stream key)"), _side("width"), _side("height")],
            {
                **errors(
                    400,
                    403,
                    502,
                    e400="`width` or `height` not a whole number from 16 to 1920",
                ),
                "404": json_response(
                    "No such stream (`not_found`), not live (`not_live`), or without video "
                    "(`no_video`: an audio-only stream)",
                    "ErrorOutput",
                ),
                "503": json_response(
                    "Live, but no segment yet (`thumbnail_not_ready`, with `Retry-After`)",
                    "ErrorOutput",
                ),
            },
        )
        at = query_param(
            "time",
            {"type": "number", "minimum": 0},
            "Seconds from the recording's start; the frame nearest it is shown. Default: 2 s "
            "in (the middle, for recordings shorter than 4 s)",
        )
        paths[f"/recordings/{{recordingId}}/thumbnail.{extension}"] = _item(
            f"recordingThumbnail{suffix}",
            "A frame of a recording at a time (immutable: "
            "`Cache-Control: max-age=86400, immutable`; `private` for a signed stream's)",
            image_format.content_type,
            [id_param("Recording id", "recordingId"), at, _side("width"), _side("height")],
            {
                **errors(
                    400,
                    403,
                    e400="`width`/`height` out of bounds, `time` negative or not a number "
                    "(`validation_error`), or `time` beyond the recording's end "
                    "(`time_out_of_range`)",
                ),
                "404": json_response(
                    "No such recording, or its files are not on this node; or no video "
                    "(`no_video`) or no decodable frame (`no_frame`)",
                    "ErrorOutput",
                ),
                "503": json_response("Object storage unreachable", "ErrorOutput"),
            },
        )
    return paths


def _item(
    op_id: str,
    summary: str,
    media_type: str,
    params: list[dict[str, Any]],
    responses: dict[str, Any],
) -> dict[str, Any]:
    ok = {"description": summary, "content": {media_type: {"schema": {"type": "string"}}}}
    get = {"operationId": op_id, "summary": summary, "responses": {"200": ok, **responses}}
    head = {
        **get,
        "operationId": f"{op_id}Head",
        "description": "Answers exactly what GET answers (status and headers, "
        "`Content-Length` included), without the body; it makes or reuses the same cached "
        "image, since only a decode tells whether the source has a frame.",
    }
    return {"parameters": [*params, _TOKEN], "get": get, "head": head}
