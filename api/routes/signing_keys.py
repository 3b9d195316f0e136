"""``/v1/signing-keys``: the account's keys for playback tokens of signed streams.

Behind the JWT middleware; an account sees and deletes only its own keys (another's is a 404).
The private key is generated here, returned once by ``POST`` and never stored.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from api import queries
from api.errors import NotFound
from api.keys import ACCOUNT, PLAYBACK_GUARD
from api.models import SigningKey
from api.playback_tokens import generate_key_pair
from api.routes.livestreams import page_info, page_params, transaction
from api.schemas.signing_keys import NewSigningKeyOutput, SigningKeyPage, signing_key_output

log = logging.getLogger(__name__)

_KEY_ID = re.compile(r"[0-9a-f]{24}")


def register(router: web.UrlDispatcher) -> None:
    """Add the signing key routes to ``router``."""
    router.add_post("/v1/signing-keys", create_signing_key)
    router.add_get("/v1/signing-keys", list_signing_keys, allow_head=False)
    router.add_get("/v1/signing-keys/{id}", get_signing_key, allow_head=False)
    router.add_delete("/v1/signing-keys/{id}", delete_signing_key)


async def create_signing_key(request: web.Request) -> web.Response:
    """``POST /v1/signing-keys`` -> 201 ``{id, privateKey, createdAt}``."""
    private_key, public_key = await asyncio.to_thread(generate_key_pair)
    async with transaction(request) as session:
        key = await queries.create_signing_key(session, request[ACCOUNT].id, public_key)
    log.info("signing key %s created by account %s", key.id, request[ACCOUNT].id)
    listed = signing_key_output(key)
    body = NewSigningKeyOutput(id=listed.id, created_at=listed.created_at, private_key=private_key)
    headers = {"Location": f"/v1/signing-keys/{key.id}"}
    return web.json_response(body.model_dump(by_alias=True), status=201, headers=headers)


async def list_signing_keys(request: web.Request) -> web.Response:
    """``GET /v1/signing-keys?page=&perPage=`` -> ``{pageInfo, data}``, newest first."""
    page, per_page = page_params(request)
    async with transaction(request) as session:
        keys, total = await queries.list_signing_keys(
            session, request[ACCOUNT].id, offset=(page - 1) * per_page, limit=per_page
        )
    listing = SigningKeyPage(
        page_info=page_info(page, per_page, total), data=[signing_key_output(k) for k in keys]
    )
    return web.json_response(listing.model_dump(by_alias=True))


async def get_signing_key(request: web.Request) -> web.Response:
    """``GET /v1/signing-keys/{id}``."""
    async with transaction(request) as session:
        key = await _own_key(request, session)
    return web.json_response(signing_key_output(key).model_dump(by_alias=True))


async def delete_signing_key(request: web.Request) -> web.Response:
    """``DELETE /v1/signing-keys/{id}``: its tokens are refused from now on (on other nodes
    within :data:`api.playback_tokens.KEY_TTL_SECONDS`)."""
    async with transaction(request) as session:
        key = await _own_key(request, session)
        output = signing_key_output(key)
        await queries.delete_signing_key(session, key)
    request.app[PLAYBACK_GUARD].forget_key(output.id)
    log.info("signing key %s deleted by account %s", output.id, request[ACCOUNT].id)
    return web.json_response(output.model_dump(by_alias=True))


async def _own_key(request: web.Request, session: AsyncSession) -> SigningKey:
    key_id = request.match_info["id"]
    key = None
    if _KEY_ID.fullmatch(key_id):
        key = await queries.get_signing_key(session, request[ACCOUNT].id, key_id)
    if key is None:
        raise NotFound("signing key not found")
    return key
