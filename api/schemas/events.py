"""The bodies POSTed to webhooks, as pydantic models: ``{id, type, createdAt, data}``, where
``data`` is the live stream as ``GET /v1/livestreams/{id}`` returns it *without its secrets*
(no ``streamKey``, no ``upstreamUrl`` or ``secureUpstreamUrl``, no restream ``streamKey``),
plus the object the event is about. :class:`api.live.stream_view.StreamView` renders them; the
OpenAPI document describes them under ``webhooks``.

Deliveries are kept in the database and their bodies shown again by the deliveries API, so they
carry ids and key-free URLs only: a leaked receiver log or database dump reveals no key.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from api.schemas.livestreams import LiveStreamOutput, RecordingOutput, _Output
from api.schemas.restream import RestreamTargetOutput
from api.schemas.sessions import SessionOutput
from api.schemas.webhooks import Timestamp
from api.webhooks.outbox import EventType

SECRET_STREAM_FIELDS = frozenset({"stream_key", "upstream_url", "secure_upstream_url"})
"""Fields of :class:`LiveStreamOutput` that hold the publish key."""


def _left_out() -> Any:
    """A field of the API object that events never carry (not dumped, not documented)."""
    return Field(default=None, exclude=True)


class EventRestreamTarget(RestreamTargetOutput):
    """A restream target in an event: its id, URL (without the key) and relay state."""

    stream_key: SkipJsonSchema[str | None] = _left_out()  # type: ignore[assignment]


class EventStream(LiveStreamOutput):
    """The live stream in an event: as the API returns it, without ``streamKey``,
    ``upstreamUrl`` and ``secureUpstreamUrl``; restream targets without their ``streamKey``."""

    stream_key: SkipJsonSchema[str | None] = _left_out()  # type: ignore[assignment]
    upstream_url: SkipJsonSchema[str | None] = _left_out()  # type: ignore[assignment]
    secure_upstream_url: SkipJsonSchema[str | None] = _left_out()
    restream: list[EventRestreamTarget]  # type: ignore[assignment]


class LiveStreamEventData(EventStream):
    """``data`` of ``livestream.*`` events: the stream and the session."""

    session: SessionOutput


class RestreamEventData(LiveStreamEventData):
    """``data`` of ``restream.*`` events: also the target that connected or gave up."""

    target: EventRestreamTarget


class RecordingEventData(EventStream):
    """``data`` of ``recording.*`` events: the stream and the recording as the API returns it."""

    recording: RecordingOutput


def event_stream_fields(output: LiveStreamOutput) -> dict[str, Any]:
    """The fields of ``output`` an event carries, by name (restream targets without keys)."""
    fields = {name: value for name, value in output if name not in SECRET_STREAM_FIELDS}
    fields["restream"] = [event_target(target) for target in output.restream]
    return fields


def event_target(target: RestreamTargetOutput) -> EventRestreamTarget:
    """``target`` as an event carries it (no ``streamKey``)."""
    fields = {name: value for name, value in target if name != "stream_key"}
    return EventRestreamTarget(**fields)


class WebhookEvent(_Output):
    """The JSON body POSTed to a webhook (what the signature covers)."""

    id: str = Field(description="Event id: the same on every retry and for every webhook.")
    type: EventType
    created_at: Timestamp
    sequence: int = Field(
        ge=1,
        description="The event's place among the events of its stream: 1 for the stream's "
        "first event, larger for every later one, assigned when the event is queued (in the "
        "transaction of the change it reports) whichever node queued it. Retries of an event "
        "carry the same number. Deliveries may arrive out of order (retries, several senders): "
        "order a stream's events by `sequence`, and ignore one with a number at or below the "
        "last you applied. Numbers may skip (events another webhook of the account receives and "
        "this one does not).",
    )
    data: LiveStreamEventData | RestreamEventData | RecordingEventData
