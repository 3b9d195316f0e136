"""Request and response bodies of ``/v1/webhooks``, as pydantic models (the conventions of
:mod:`api.schemas.base`: strict inputs that forbid unknown fields, camelCase outputs). The OpenAPI
document is generated from these models; the events themselves are in :mod:`api.schemas.events`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from api.models import Webhook, WebhookDelivery
from api.schemas.livestreams import PageInfo, _Input, _Output, iso_timestamp
from api.url_policy import WEBHOOK_SCHEMES, UrlRefused, checked_url
from api.webhooks.outbox import EventPattern, EventType

MAX_EVENT_PATTERNS = 20
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class WebhookCreate(_Input):
    """Body of ``POST /v1/webhooks``."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="http:// or https:// URL that receives the events as signed JSON POSTs. "
        "Stored and returned normalised: scheme in lower case, host as the client connects to "
        "it (lower case, IDNA).",
    )
    events: list[EventPattern] = Field(
        min_length=1,
        max_length=MAX_EVENT_PATTERNS,
        description="Event types to receive: exact (`recording.ready`), a family "
        "(`livestream.*`, `recording.*`, `restream.*`) or `*` for all.",
    )

    @field_validator("url")
    @classmethod
    def _url_is_allowed(cls, value: str, info: ValidationInfo) -> str:
        if "\x00" in value:
            raise PydanticCustomError("nul_character", "url must not contain NUL characters")
        allow_private = bool(info.context and info.context.get("allow_private_targets"))
        try:
            return checked_url(value, schemes=WEBHOOK_SCHEMES, allow_private=allow_private)
        except UrlRefused as exc:
            raise PydanticCustomError("webhook_url", str(exc)) from None

    @field_validator("events")
    @classmethod
    def _without_repeats(cls, value: list[EventPattern]) -> list[EventPattern]:
        return list(dict.fromkeys(value))


class WebhookOutput(_Output):
    """A webhook subscription (its secret is only shown when it is created)."""

    id: str = Field(description="24-hex id of the webhook.")
    url: str
    events: list[str] = Field(description="The event type patterns it receives.")
    created_at: Timestamp


class WebhookCreated(WebhookOutput):
    """Body of ``POST /v1/webhooks``: the webhook with its signing secret."""

    secret: str = Field(
        description="Key of the HMAC-SHA256 in the `Liverelay-Signature` header of every "
        "delivery. Shown only in this response: store it."
    )


class WebhookList(_Output):
    """Body of ``GET /v1/webhooks``: newest first."""

    data: list[WebhookOutput]


DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookDeliveryOutput(_Output):
    """One event sent (or being sent) to one webhook."""

    id: str = Field(description="24-hex id of the delivery.")
    event_id: str = Field(description="The event's `id` (the same for every webhook).")
    type: EventType
    sequence: int | None = Field(
        description="The event's `sequence` among its stream's events (as in its body)."
    )
    status: DeliveryStatus = Field(
        description="`pending` until the receiver answered 2xx (`delivered`) or 24 hours of "
        "retries passed (`failed`)."
    )
    attempts: int = Field(description="POSTs made so far.")
    last_status_code: int | None = Field(description="HTTP status of the last attempt.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    created_at: Timestamp
    delivered_at: Timestamp | None
    next_attempt_at: Timestamp | None = Field(description="When it is tried next (pending only).")


class WebhookDeliveryPage(_Output):
    """Body of ``GET /v1/webhooks/{id}/deliveries``: newest first."""

    page_info: PageInfo
    data: list[WebhookDeliveryOutput]


def webhook_output(webhook: Webhook) -> WebhookOutput:
    """A webhook in responses, without its secret."""
    return WebhookOutput(
        id=webhook.id,
        url=webhook.url,
        events=list(webhook.events),
        created_at=iso_timestamp(webhook.created_at),
    )


def delivery_output(delivery: WebhookDelivery) -> WebhookDeliveryOutput:
    """A delivery in responses."""
    pending = delivery.status == "pending"
    return WebhookDeliveryOutput(
        id=delivery.id,
        event_id=delivery.event_id,
        type=delivery.event_type,  # type: ignore[arg-type]
        sequence=delivery.sequence,
        status=delivery.status,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=iso_timestamp(delivery.created_at),
        delivered_at=iso_timestamp(delivery.delivered_at) if delivery.delivered_at else None,
        next_attempt_at=iso_timestamp(delivery.next_attempt_at) if pending else None,
    )
