"""``/v1/webhooks``: subscribe a URL to events, list, get and delete subscriptions, and read a
webhook's deliveries.

Behind the JWT middleware like every ``/v1`` route; an account sees only its own webhooks, and
another account's is a 404. The signing secret is generated here and shown once, in the answer
to ``POST``. URLs follow the restream targets' address policy (:mod:`api.url_policy`).
"""

from __future__ import annotations

import logging
import re
import secrets

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from api import queries
from api.errors import ApiError, NotFound
from api.keys import ACCOUNT, SETTINGS
from api.models import Webhook
from api.routes.livestreams import page_info, page_params, transaction
from api.schemas.livestreams import read_json_object, validate_body
from api.schemas.webhooks import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPage,
    WebhookList,
    delivery_output,
    webhook_output,
)

log = logging.getLogger(__name__)

MAX_WEBHOOKS_PER_ACCOUNT = 20
SECRET_PREFIX = "whsec_"
_WEBHOOK_ID = re.compile(r"[0-9a-f]{24}")


def register(router: web.UrlDispatcher) -> None:
    """Add the webhook routes to ``router``."""
    router.add_post("/v1/webhooks", create_webhook)
    router.add_get("/v1/webhooks", list_webhooks, allow_head=False)
    router.add_get("/v1/webhooks/{id}", get_webhook, allow_head=False)
    router.add_delete("/v1/webhooks/{id}", delete_webhook)
    router.add_get("/v1/webhooks/{id}/deliveries", list_deliveries, allow_head=False)


async def create_webhook(request: web.Request) -> web.Response:
    """``POST /v1/webhooks`` -> 201 with the webhook and its secret."""
    context = {"allow_private_targets": request.app[SETTINGS].allow_private_targets}
    body = validate_body(WebhookCreate, await read_json_object(request), context)
    account_id = request[ACCOUNT].id
    async with transaction(request) as session:
        if await queries.count_webhooks(session, account_id) >= MAX_WEBHOOKS_PER_ACCOUNT:
            raise ApiError(
                409,
                f"an account can have at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks",
                code="webhook_limit_reached",
            )
        secret = SECRET_PREFIX + secrets.token_hex(32)
        webhook = await queries.create_webhook(session, account_id, body.url, body.events, secret)
    log.info("webhook %s created by account %s", webhook.id, account_id)
    created = WebhookCreated(**dict(webhook_output(webhook)), secret=webhook.secret)
    headers = {"Location": f"/v1/webhooks/{webhook.id}"}
    return web.json_response(created.model_dump(by_alias=True), status=201, headers=headers)


async def list_webhooks(request: web.Request) -> web.Response:
    """``GET /v1/webhooks`` -> ``{"data": [...]}``, newest first."""
    async with transaction(request) as session:
        webhooks = await queries.list_webhooks(session, request[ACCOUNT].id)
    listing = WebhookList(data=[webhook_output(w) for w in webhooks])
    return web.json_response(listing.model_dump(by_alias=True))


async def get_webhook(request: web.Request) -> web.Response:
    """``GET /v1/webhooks/{id}``."""
    async with transaction(request) as session:
        webhook = await own_webhook(request, session)
    return web.json_response(webhook_output(webhook).model_dump(by_alias=True))


async def delete_webhook(request: web.Request) -> web.Response:
    """``DELETE /v1/webhooks/{id}``: stop sending to it and delete its deliveries (their
    payloads with them); returns the deleted webhook. A delivery in flight finds its row gone
    and records nothing."""
    async with transaction(request) as session:
        webhook = await queries.delete_webhook(session, await own_webhook(request, session))
    log.info("webhook %s deleted by account %s", webhook.id, request[ACCOUNT].id)
    return web.json_response(webhook_output(webhook).model_dump(by_alias=True))


async def list_deliveries(request: web.Request) -> web.Response:
    """``GET /v1/webhooks/{id}/deliveries?page=&perPage=`` -> one page, newest first."""
    page, per_page = page_params(request)
    async with transaction(request) as session:
        webhook = await own_webhook(request, session)
        deliveries, total = await queries.list_webhook_deliveries(
            session, webhook.id, (page - 1) * per_page, per_page
        )
    listing = WebhookDeliveryPage(
        page_info=page_info(page, per_page, total), data=[delivery_output(d) for d in deliveries]
    )
    return web.json_response(listing.model_dump(by_alias=True))


async def own_webhook(request: web.Request, session: AsyncSession) -> Webhook:
    """The webhook ``{id}`` of the request's account (not deleted), or a 404."""
    webhook_id = request.match_info["id"]
    webhook = None
    if _WEBHOOK_ID.fullmatch(webhook_id):
        webhook = await queries.get_webhook(session, request[ACCOUNT].id, webhook_id)
    if webhook is None:
        raise NotFound("webhook not found")
    return webhook
