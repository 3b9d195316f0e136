"""The webhook part of the OpenAPI document: the ``/v1/webhooks`` operations and, under the
document's top-level ``webhooks``, the events liverelay POSTs to subscribers. Bodies refer to
component schemas generated from :mod:`api.schemas.webhooks` and :mod:`api.schemas.events` (listed
in :data:`WEBHOOK_MODELS`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from api.openapi.parts import body, errors, id_param, json_response, query_param
from api.routes.livestreams import DEFAULT_PER_PAGE, MAX_PAGE, MAX_PER_PAGE
from api.schemas.events import WebhookEvent
from api.schemas.webhooks import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPage,
    WebhookList,
    WebhookOutput,
)
from api.webhooks.outbox import EVENT_TYPES

WEBHOOK_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (WebhookCreate, "validation"),
    (WebhookCreated, "serialization"),
    (WebhookOutput, "serialization"),
    (WebhookList, "serialization"),
    (WebhookDeliveryPage, "serialization"),
    (WebhookEvent, "serialization"),
]
"""Models whose schemas the webhook operations refer to."""

_WEBHOOK_ID = id_param("Webhook id")
_LIMIT = {"e409": "The account has as many webhooks as allowed"}
_SIGNATURE = (
    "Every delivery is a POST with `Content-Type: application/json` and the header "
    '`Liverelay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed '
    "with the webhook's secret>`. Answer 2xx within 10 s; anything else is retried with "
    "exponential backoff for 24 hours. The same event may arrive more than once: de-duplicate "
    "on its `id`. Events of a stream carry a `sequence` number that grows with every event "
    "of that stream: order by it, since deliveries may arrive out of order."
)


def webhook_paths() -> dict[str, Any]:
    """The ``/v1/webhooks`` path items."""
    return {
        "/v1/webhooks": {"get": _list(), "post": _create()},
        "/v1/webhooks/{id}": {
            "parameters": [_WEBHOOK_ID],
            "get": _operation("getWebhook", "Get a webhook", "The webhook", "WebhookOutput"),
            "delete": {
                **_operation(
                    "deleteWebhook", "Delete a webhook", "The deleted webhook", "WebhookOutput"
                ),
                "description": "Nothing more is sent to it; its deliveries are deleted.",
            },
        },
        "/v1/webhooks/{id}/deliveries": {"parameters": [_WEBHOOK_ID], "get": _deliveries()},
    }


def webhook_events() -> dict[str, Any]:
    """The document's top-level ``webhooks``: one POST per event type."""
    return {
        event_type: {
            "post": {
                "operationId": f"event_{event_type.replace('.', '_')}",
                "summary": f"`{event_type}` sent to subscribed webhooks",
                "description": _SIGNATURE,
                "parameters": [_signature_header()],
                "requestBody": body("WebhookEvent"),
                "responses": {"200": {"description": "Any 2xx: delivered"}},
            }
        }
        for event_type in EVENT_TYPES
    }


def _signature_header() -> dict[str, Any]:
    return {
        "name": "Liverelay-Signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
    }


def _operation(op_id: str, summary: str, ok: str, model: str) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "security": [{"jwt": []}],
        "responses": {"200": json_response(ok, model), **errors(401, 404)},
    }


def _list() -> dict[str, Any]:
    return {
        "operationId": "listWebhooks",
        "summary": "List the account's webhooks, newest first",
        "security": [{"jwt": []}],
        "responses": {
            "200": json_response("The webhooks (without secrets)", "WebhookList"),
            **errors(401),
        },
    }


def _create() -> dict[str, Any]:
    return {
        "operationId": "createWebhook",
        "summary": "Subscribe a URL to events",
        "description": "The answer carries the signing `secret`; it is never shown again. "
        + _SIGNATURE,
        "security": [{"jwt": []}],
        "requestBody": body("WebhookCreate"),
        "responses": {
            "201": json_response("The new webhook with its secret", "WebhookCreated"),
            **errors(400, 401, 409, 413, 415, **_LIMIT),
        },
    }


def _deliveries() -> dict[str, Any]:
    def page_param(name: str, default: int, maximum: int) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
        return query_param(name, schema, "1-based page number" if name == "page" else "Page size")

    return {
        "operationId": "listWebhookDeliveries",
        "summary": "The webhook's deliveries, newest first",
        "security": [{"jwt": []}],
        "parameters": [
            page_param("page", 1, MAX_PAGE),
            page_param("perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE),
        ],
        "responses": {
            "200": json_response("One page", "WebhookDeliveryPage"),
            **errors(400, 401, 404),
        },
    }
