"""The ``/v1/signing-keys`` part of the OpenAPI document (keys for playback tokens)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from api.openapi.parts import errors, id_param, json_response, query_param
from api.routes.livestreams import DEFAULT_PER_PAGE, MAX_PAGE, MAX_PER_PAGE
from api.schemas.signing_keys import NewSigningKeyOutput, SigningKeyOutput, SigningKeyPage

SIGNING_KEY_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (NewSigningKeyOutput, "serialization"),
    (SigningKeyOutput, "serialization"),
    (SigningKeyPage, "serialization"),
]
"""Models whose schemas the signing key operations refer to."""

_KEY_ID = id_param("Signing key id (the `kid` of its playback tokens)")
_TOKEN = (
    "Sign playback tokens for streams with `playbackPolicy: signed` with the private key: an "
    "RS256 JWT with header `kid` = the key's `id` and claims `sub` = the stream id, `aud` = "
    '`"v"` and `exp`; the viewer adds `?token=<jwt>` to `downstreamUrl` or `recordingUrl` '
    "(`liverelay playback-token` prints one)."
)


def signing_key_paths() -> dict[str, Any]:
    """The ``/v1/signing-keys`` path items."""

    def page_param(name: str, default: int, maximum: int) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
        return query_param(name, schema, "1-based page number" if name == "page" else "Page size")

    return {
        "/v1/signing-keys": {
            "get": {
                "operationId": "listSigningKeys",
                "summary": "List the account's signing keys, newest first (no private keys)",
                "security": [{"jwt": []}],
                "parameters": [
                    page_param("page", 1, MAX_PAGE),
                    page_param("perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE),
                ],
                "responses": {
                    "200": json_response("One page", "SigningKeyPage"),
                    **errors(400, 401),
                },
            },
            "post": {
                "operationId": "createSigningKey",
                "summary": "Create a signing key for playback tokens",
                "description": "The answer carries the RSA `privateKey` (PEM, base64-encoded); "
                "it is never shown again, the server keeps only the public key. " + _TOKEN,
                "security": [{"jwt": []}],
                "responses": {
                    "201": json_response("The new key with its private key", "NewSigningKeyOutput"),
                    **errors(401),
                },
            },
        },
        "/v1/signing-keys/{id}": {
            "parameters": [_KEY_ID],
            "get": {
                "operationId": "getSigningKey",
                "summary": "Get a signing key (no private key)",
                "security": [{"jwt": []}],
                "responses": {
                    "200": json_response("The key", "SigningKeyOutput"),
                    **errors(401, 404),
                },
            },
            "delete": {
                "operationId": "deleteSigningKey",
                "summary": "Delete a signing key",
                "description": "Its playback tokens are refused from now on: at once on the "
                "node that deleted it, within 5 seconds on the others.",
                "security": [{"jwt": []}],
                "responses": {
                    "200": json_response("The deleted key", "SigningKeyOutput"),
                    **errors(401, 404),
                },
            },
        },
    }
