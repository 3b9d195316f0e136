"""Bodies of a restream target: as sent in ``restream`` lists and to
``/v1/livestreams/{id}/restream``, and as returned with the state of its relay."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from api.errors import ApiError, FieldError
from api.models import RestreamTarget
from api.schemas.base import (
    InputModel,
    OutputModel,
    iso_timestamp,
    omit_null_defaults,
    optional_field,
)
from api.schemas.current_session import OutputStateName, output_state_name
from api.url_policy import ALLOWED_SCHEMES, UrlRefused, checked_url
from workers.supervisor import OutputStatus

_NO_SPACE_OR_CONTROL = r"^[^\s\x00-\x1f\x7f]+$"
_RESTREAM_URL = r"^[Rr][Tt][Mm][Pp][Ss]?://[^\x00-\x20\x7f]+$"
"""Documents part of what :func:`api.url_policy.checked_url` refuses (no host, private
addresses are checked there only)."""

Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        description="rtmp:// or rtmps:// URL of the ingest, with a host; unless the server "
        "allows private targets, not a loopback, private or link-local address. Stored and "
        "returned normalised: scheme in lower case, host as the client connects to it "
        "(lower case, IDNA).",
        json_schema_extra={"pattern": _RESTREAM_URL},
    ),
]
TargetKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=512,
        pattern=_NO_SPACE_OR_CONTROL,
        description="The target's stream key (appended to `url` after a `/`).",
    ),
]


def _url_is_allowed(value: str, info: ValidationInfo) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "url must not contain NUL characters")
    allow_private = bool(info.context and info.context.get("allow_private_targets"))
    try:
        return checked_url(value, schemes=ALLOWED_SCHEMES, allow_private=allow_private)
    except UrlRefused as exc:
        raise PydanticCustomError("restream_url", str(exc)) from None


TargetId = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{24}$",
        description="The id of one of the stream's targets, as returned: this item is that "
        "target (it keeps its id; a live relay goes on untouched unless url or streamKey "
        "changed). Optional.",
    ),
]
SameId = Annotated[
    str,
    Field(pattern=r"^[0-9a-f]{24}$", description="Same as `_id` (both agree if both given)."),
]
ReadOnly = Annotated[
    Any,
    Field(
        description="Read-only relay state: ignored when sent (accepted so that an item as "
        "returned can be sent back)."
    ),
]


class _AsReturned(InputModel):
    """The fields a restream target is returned with besides ``url`` and ``streamKey``, so an
    item read with ``GET`` can be sent back: ``_id`` (or ``id``) tells which existing target
    it is, the relay state is ignored."""

    model_config = ConfigDict(json_schema_extra=omit_null_defaults)

    target_id: TargetId = optional_field("_id")
    id: SameId = optional_field()
    status: ReadOnly = None
    last_error: ReadOnly = Field(default=None, alias="lastError")
    since: ReadOnly = None
    retries: ReadOnly = None

    @field_validator("id")
    @classmethod
    def _same_as_underscore_id(cls, value: str, info: ValidationInfo) -> str:
        given = info.data.get("target_id")
        if given is not None and given != value:
            raise PydanticCustomError(
                "id_mismatch", "id and _id must be the same id when both are given"
            )
        return value

    def given_id(self) -> tuple[str, str] | None:
        """``(field, id)`` of the existing target this item names (``_id`` first), if any."""
        if self.target_id is not None:
            return "_id", self.target_id
        if self.id is not None:
            return "id", self.id
        return None


class RestreamTargetInput(_AsReturned):
    """A restream target as sent by clients (also the body of
    ``POST /v1/livestreams/{id}/restream``, where it cannot name an existing target)."""

    url: Url
    stream_key: TargetKey = Field(alias="streamKey")

    _url_allowed = field_validator("url")(_url_is_allowed)


class RestreamTargetUpdate(_AsReturned):
    """Body of ``PATCH /v1/livestreams/{id}/restream/{targetId}``: only the given fields
    change; the target keeps its ``_id`` (``_id`` or ``id`` in the body, if given, must be
    that target's). ``null`` is not accepted."""

    url: Url = optional_field()
    stream_key: TargetKey = optional_field("streamKey")

    _url_allowed = field_validator("url")(_url_is_allowed)


def check_target_ids(items: Sequence[_AsReturned], known: Collection[str], field: str) -> None:
    """400 unless every id the ``items`` of list ``field`` give is one of the ``known`` ids
    (the stream's targets), at most once."""
    details: list[FieldError] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        given = item.given_id()
        if given is None:
            continue
        name, target_id = given
        if target_id not in known:
            message = (
                f"{target_id} is not the id of one of this stream's restream targets (leave "
                "_id and id out to add a target)"
            )
        elif target_id in seen:
            message = f"{target_id} names the same restream target as an earlier item"
        else:
            seen.add(target_id)
            continue
        details.append(FieldError(f"{field}[{index}].{name}", message))
    if details:
        raise ApiError(400, "request body is invalid", code="validation_error", details=details)


class RestreamTargetOutput(OutputModel):
    """A restream target in responses, with the state of its relay on this node."""

    target_id: str = Field(
        alias="_id",
        description="24-hex id, kept while url+streamKey stay, or when an item sent back "
        "carries it.",
    )
    id: str = Field(description="The same id as `_id` (both names are returned).")
    url: str
    stream_key: str
    status: OutputStateName = Field(
        description="`idle` when the stream is not live; while live: `connecting`, `live`, "
        "`retrying` (waiting out the backoff after a failure) or `failed`."
    )
    last_error: str | None = Field(
        description="Why the last attempt failed (stream keys and credentials removed); "
        "null when not live or nothing failed."
    )
    since: str | None = Field(
        json_schema_extra={"format": "date-time"},
        description="When the current status began; null when not live.",
    )
    retries: int = Field(description="Consecutive failed attempts in this live session.")


def restream_target_output(
    target: RestreamTarget, status: OutputStatus | None
) -> RestreamTargetOutput:
    """A target with its relay state (``idle`` and nulls when it is not being relayed)."""
    return RestreamTargetOutput(
        _id=target.id,
        id=target.id,
        url=target.url,
        stream_key=target.stream_key,
        status=output_state_name(status.state) if status is not None else "idle",
        last_error=status.last_error if status is not None else None,
        since=iso_timestamp(datetime.fromtimestamp(status.since, UTC)) if status else None,
        retries=status.retries if status is not None else 0,
    )
