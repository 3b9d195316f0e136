"""The bodies POSTed to webhooks, as pydantic models: ``{id, type, createdAt, data}``, where
``data`` is the live stream exactly as ``GET /v1/livestreams/{id}`` returns it, plus the object
the event is about. :class:`api.stream_view.StreamView` renders them; the OpenAPI document
describes them under ``webhooks``.
"""

from __future__ import annotations

from pydantic import Field

from api.outbox import EventType
from api.schemas import (
    LiveStreamOutput,
    RecordingOutput,
    RestreamTargetOutput,
    _Output,
)
from api.session_schemas import SessionOutput
from api.webhook_schemas import Timestamp


class LiveStreamEventData(LiveStreamOutput):
    """``data`` of ``livestream.*`` events: the stream as the API returns it, and the session."""

    session: SessionOutput


class RestreamEventData(LiveStreamEventData):
    """``data`` of ``restream.*`` events: also the target that connected or gave up."""

    target: RestreamTargetOutput


class RecordingEventData(LiveStreamOutput):
    """``data`` of ``recording.*`` events: the stream and the recording as the API returns it."""

    recording: RecordingOutput


class WebhookEvent(_Output):
    """The JSON body POSTed to a webhook (what the signature covers)."""

    id: str = Field(description="Event id: the same on every retry and for every webhook.")
    type: EventType
    created_at: Timestamp
    data: LiveStreamEventData | RestreamEventData | RecordingEventData
