"""Request and response bodies of ``/v1/livestreams`` and its sub-resources, as pydantic models.

Request models are strict and forbid unknown fields (:mod:`api.schemas.base` has the
conventions, :mod:`api.schemas.restream` the restream target bodies); their validation errors
become the standard error shape with JSON field paths. Response models are what handlers
serialise through, so the OpenAPI document generated from them (:mod:`api.openapi`) cannot
drift from the wire.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from api.auth import AuthenticatedAccount
from api.errors import ApiError, FieldError
from api.models import (
    DEFAULT_LATENCY_MODE,
    DEFAULT_MAX_DURATION_SECONDS,
    DEFAULT_RECONNECT_WINDOW_SECONDS,
    LiveStream,
    Recording,
)
from api.schemas.base import InputModel as _Input
from api.schemas.base import OutputModel as _Output
from api.schemas.base import iso_timestamp, omit_null_defaults, optional_field
from api.schemas.current_session import CurrentSessionOutput
from api.schemas.renditions import Renditions
from api.schemas.restream import (
    RestreamTargetInput,
    RestreamTargetOutput,
    restream_target_output,
)
from workers.recording import RecordingSummary
from workers.renditions import SOURCE, decode_renditions
from workers.supervisor import OutputStatus

MAX_RESTREAM_TARGETS = 10
MAX_RECONNECT_WINDOW_SECONDS = 1800
MIN_MAX_DURATION_SECONDS = 60
MAX_MAX_DURATION_SECONDS = DEFAULT_MAX_DURATION_SECONDS

_NOT_BLANK_NOR_NUL = r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$"
"""Documents what :func:`_not_blank` refuses (the validator gives the precise message)."""

Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        description="Nickname of the live stream (not blank).",
        json_schema_extra={"pattern": _NOT_BLANK_NOR_NUL},
    ),
]
RestreamList = Annotated[
    list[RestreamTargetInput],
    Field(max_length=MAX_RESTREAM_TARGETS, description="Targets the stream is relayed to."),
]


def _integral(value: object) -> object:
    """JSON Schema counts ``600.0`` as an integer, so take it as ``600`` (other numbers pass
    through to the strict integer check, which refuses them)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


ReconnectWindow = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_RECONNECT_WINDOW_SECONDS,
        description="Seconds a dropped publisher may take to reconnect into the same session "
        "(same playlist, recording and restream connections); 0 ends the session at once. "
        "Applies from the next publish.",
    ),
    BeforeValidator(_integral),
]
MaxDuration = Annotated[
    int,
    Field(
        ge=MIN_MAX_DURATION_SECONDS,
        le=MAX_MAX_DURATION_SECONDS,
        description="Longest live session in seconds; the publisher is disconnected when it is "
        "reached. Applies from the next publish.",
    ),
    BeforeValidator(_integral),
]


LatencyMode = Annotated[
    Literal["low", "standard"],
    Field(
        description="`low` (the default for new streams): low-latency HLS (RFC 8216bis) with "
        "fMP4 parts of about 200 ms, blocking playlist reloads and delta updates; players that "
        "do not know low-latency HLS (hls.js with `lowLatencyMode: false`, Chromium's own "
        "player, VLC, ffmpeg) play its whole segments. `standard`: MPEG-TS segments of "
        "`hlsSegmentSeconds`, for players and tools that need MPEG-TS. Both at the same "
        "`downstreamUrl`; a change while live applies from the next session. A recorded `low` "
        "stream is recorded from the same fMP4 segments (a playlist with `EXT-X-MAP`).",
    ),
]


PlaybackPolicy = Annotated[
    Literal["public", "signed"],
    Field(
        description="`public`: anyone with the stream's id may play it and its recordings. "
        "`signed`: `downstreamUrl` and `recordingUrl` (and each recording's URL) need "
        "`?token=` with an RS256 playback token signed with one of the account's signing keys "
        "(`/v1/signing-keys`); anything else is a 403. Applies at once, also while live.",
    ),
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "name must not be blank")
    if "\x00" in value:  # PostgreSQL text cannot store NUL; refuse it on every backend alike
        raise PydanticCustomError("nul_character", "name must not contain NUL characters")
    return value


class LiveStreamCreate(_Input):
    """Body of ``POST /v1/livestreams``."""

    name: Name
    record: bool = Field(
        default=False,
        description="Record each live session as an HLS VOD (see `/v1/livestreams/{id}/"
        "recordings`). A change while live applies from the next session.",
    )
    restream: RestreamList = Field(default_factory=list)
    reconnect_window_seconds: ReconnectWindow = Field(
        default=DEFAULT_RECONNECT_WINDOW_SECONDS, alias="reconnectWindowSeconds"
    )
    max_duration_seconds: MaxDuration = Field(
        default=DEFAULT_MAX_DURATION_SECONDS, alias="maxDurationSeconds"
    )
    latency_mode: LatencyMode = Field(default=DEFAULT_LATENCY_MODE, alias="latencyMode")
    playback_policy: PlaybackPolicy = Field(default="public", alias="playbackPolicy")
    renditions: Renditions = Field(default_factory=lambda: [SOURCE])

    _name_not_blank = field_validator("name")(_not_blank)


class LiveStreamUpdate(_Input):
    """Body of ``PATCH``/``POST /v1/livestreams/{id}``: only the given fields change;
    ``restream`` replaces the whole list. ``null`` is not accepted for any field."""

    model_config = ConfigDict(json_schema_extra=omit_null_defaults)

    name: Name = optional_field()
    record: bool = optional_field()
    restream: RestreamList = optional_field()
    reconnect_window_seconds: ReconnectWindow = optional_field("reconnectWindowSeconds")
    max_duration_seconds: MaxDuration = optional_field("maxDurationSeconds")
    latency_mode: LatencyMode = optional_field("latencyMode")
    playback_policy: PlaybackPolicy = optional_field("playbackPolicy")
    renditions: Renditions = optional_field()

    _name_not_blank = field_validator("name")(_not_blank)


StreamStatus = Literal["idle", "live", "disabled"]


class UserOutput(_Output):
    """The owner of a live stream."""

    name: str
    id: str


class LiveStreamOutput(_Output):
    """A live stream as every endpoint returns it; playback URLs never contain the key."""

    record: bool
    user_id: str
    name: str
    stream_key: str = Field(description="Secret publish key (UUID4).")
    upstream_url: str = Field(description="RTMP URL to publish to (contains the key).")
    stream_url: str = Field(description="RTMP server URL, for clients that take the key apart.")
    secure_upstream_url: str | None = Field(
        description="RTMPS (RTMP over TLS) URL to publish to (contains the key); null when "
        "the server has no RTMPS ingest (`LIVERELAY_RTMPS_PORT` unset)."
    )
    secure_stream_url: str | None = Field(
        description="RTMPS server URL, for clients that take the key apart; null when the "
        "server has no RTMPS ingest."
    )
    downstream_url: str = Field(description="HLS playback URL.")
    recording_url: str = Field(description="HLS playlist of the recording.")
    restream: list[RestreamTargetOutput]
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    updated_at: str = Field(json_schema_extra={"format": "date-time"})
    user: UserOutput
    id: str
    status: StreamStatus = Field(
        description="`disabled` when the stream refuses publishes (whatever else is true); "
        "otherwise `live` while it has a live session on this node (also while it waits for "
        "a dropped publisher within the reconnect window), else `idle`. `GET` of one stream "
        "answers from the node the stream is live on; lists only know this node's sessions."
    )
    reconnect_window_seconds: int = Field(
        description="Seconds a dropped publisher may take to reconnect into the same session."
    )
    max_duration_seconds: int = Field(description="Longest live session, in seconds.")
    latency_mode: Literal["low", "standard"] = Field(
        description="How the stream is packaged for playback from its next session: `low` "
        "(low-latency HLS with fMP4 parts, the default for new streams) or `standard` "
        "(MPEG-TS HLS)."
    )
    playback_policy: Literal["public", "signed"] = Field(
        description="`public`, or `signed`: playback and recordings need a playback token."
    )
    renditions: list[str] = Field(
        description="The renditions the stream asks for from its next session (`source` "
        "first); `currentSession.renditions` are those the live session produces."
    )
    current_session: CurrentSessionOutput | None = Field(
        description="The live session on this node (for `GET` of one stream: on the node "
        "it is live on); null when there is none."
    )


class RecordingOutput(_Output):
    """One recorded live session."""

    id: str = Field(description="24-hex id of the recording.")
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    ended_at: str | None = Field(
        json_schema_extra={"format": "date-time"}, description="Null while recording."
    )
    duration: float = Field(description="Seconds of recorded media.")
    bytes: int = Field(description="Size of the recorded segments.")
    status: Literal["recording", "ready", "failed"] = Field(
        description="`recording` while the session is live (the playlist grows as an HLS "
        "EVENT playlist), `ready` once closed (VOD), `failed` when nothing playable was kept."
    )
    error: str | None = Field(
        description="Why the recording failed, or what a ready one misses (a segment that "
        "could not be stored); null otherwise."
    )
    recording_url: str = Field(description="HLS playlist of this recording.")


class PageInfo(_Output):
    """Where a page is in a listing."""

    current_page: int
    per_page: int
    last_page: int


class RecordingPage(_Output):
    """Body of ``GET /v1/livestreams/{id}/recordings``: newest first."""

    page_info: PageInfo
    data: list[RecordingOutput]


class LiveStreamPage(_Output):
    """Body of ``GET /v1/livestreams``."""

    page_info: PageInfo
    data: list[LiveStreamOutput]


class FieldErrorOutput(_Output):
    """One field's problem."""

    field: str
    message: str


class ErrorOutput(_Output):
    """Body of every error response."""

    status: int
    code: str
    message: str
    details: list[FieldErrorOutput]
    request_id: str


class HealthOutput(_Output):
    """Body of ``GET /healthz``."""

    status: Literal["ok"]


class ReadinessOutput(_Output):
    """Body of ``GET /readyz``: overall status and each check's result, ``ok`` or ``failed``
    (why is in the server's log, not here: anyone may ask); ``draining`` with no checks while
    the node drains."""

    status: Literal["ok", "unavailable", "draining"]
    checks: dict[str, Literal["ok", "failed"]]


_JSON_MEDIA_TYPE = re.compile(r"application/(?:[a-z0-9!#$&^_.-]+\+)?json")
"""``application/json`` and the JSON-based types (``application/merge-patch+json``...)."""
_UTF8 = ("utf-8", "utf8")


def check_json_content_type(request: web.Request) -> None:
    """415 unless the body is declared JSON in UTF-8 (``application/json``, a ``+json`` type,
    no ``charset`` or a UTF-8 one); a request without ``Content-Type`` is read as JSON."""
    header = request.headers.get(hdrs.CONTENT_TYPE)
    if header is None:
        return
    media_type, _, parameters = header.partition(";")
    media_type = media_type.strip().lower()
    charset = next(
        (
            value.strip().strip('"').lower()
            for name, _, value in (p.partition("=") for p in parameters.split(";"))
            if name.strip().lower() == "charset"
        ),
        None,
    )
    if _JSON_MEDIA_TYPE.fullmatch(media_type) and charset in (None, *_UTF8):
        return
    shown = header if len(header) <= 100 else header[:100] + "..."
    raise ApiError(415, f"request body must be application/json in UTF-8, not {shown!r}")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (415 when declared another type, 413 when larger than
    the app's limit)."""
    check_json_content_type(request)
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    return data


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_body(
    model: type[ModelT], data: Mapping[str, Any], context: Mapping[str, Any] | None = None
) -> ModelT:
    """``data`` validated as ``model``; failures raise the 400 ``validation_error`` shape."""
    try:
        return model.model_validate(data, context=dict(context or {}))
    except ValidationError as exc:
        details = [
            FieldError(field=field_path(err["loc"]), message=err["msg"]) for err in exc.errors()
        ]
        raise ApiError(
            400, "request body is invalid", code="validation_error", details=details
        ) from None


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("restream", 0, "url")`` -> ``restream[0].url``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


StatusLookup = Callable[[str], OutputStatus | None]
"""The live relay status of a restream target by id (``None``: not relaying on this node)."""


def _not_relaying(target_id: str) -> OutputStatus | None:
    return None


def live_stream_output(
    stream: LiveStream,
    account: AuthenticatedAccount,
    *,
    rtmp_base: str,
    rtmps_base: str | None = None,
    http_base: str,
    live: bool,
    restream_status: StatusLookup = _not_relaying,
    current_session: CurrentSessionOutput | None = None,
) -> LiveStreamOutput:
    """The live stream object (``targets`` must be loaded); ``live`` tells whether it has a
    session on this node, ``current_session`` is that session's status if known."""
    return LiveStreamOutput(
        record=stream.record,
        user_id=account.id,
        name=stream.name,
        stream_key=stream.stream_key,
        upstream_url=f"{rtmp_base}/live/{stream.stream_key}",
        stream_url=f"{rtmp_base}/live",
        secure_upstream_url=f"{rtmps_base}/live/{stream.stream_key}" if rtmps_base else None,
        secure_stream_url=f"{rtmps_base}/live" if rtmps_base else None,
        downstream_url=f"{http_base}/live/{stream.id}/index.m3u8",
        recording_url=f"{http_base}/live/{stream.id}/storage/index.m3u8",
        restream=[restream_target_output(t, restream_status(t.id)) for t in stream.targets],
        created_at=iso_timestamp(stream.created_at),
        updated_at=iso_timestamp(stream.updated_at),
        user=UserOutput(name=account.name, id=account.id),
        id=stream.id,
        status="disabled" if stream.disabled else ("live" if live else "idle"),
        reconnect_window_seconds=stream.reconnect_window_seconds,
        max_duration_seconds=stream.max_duration_seconds,
        latency_mode="low" if stream.latency_mode == "low" else "standard",
        playback_policy="signed" if stream.playback_policy == "signed" else "public",
        renditions=list(decode_renditions(stream.renditions)),
        current_session=current_session,
    )


def recording_output(
    recording: Recording, *, http_base: str, live: RecordingSummary | None = None
) -> RecordingOutput:
    """A recording in responses; ``live`` (the running recording's summary) supersedes the
    row's size and duration while it records."""
    duration, size = recording.duration, recording.bytes
    if live is not None and recording.status == "recording":
        duration, size = live.duration, live.bytes
    return RecordingOutput(
        id=recording.id,
        started_at=iso_timestamp(recording.started_at),
        ended_at=iso_timestamp(recording.ended_at) if recording.ended_at else None,
        duration=duration,
        bytes=size,
        status=recording.status,  # type: ignore[arg-type]
        error=recording.error,
        recording_url=f"{http_base}/recordings/{recording.id}/index.m3u8",
    )
