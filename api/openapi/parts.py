"""Building blocks of the OpenAPI document's operations: schema references, JSON responses,
the standard error responses, path and query parameters, request bodies."""

from __future__ import annotations

from typing import Any

REF = "#/components/schemas/{model}"
"""Where component schemas live (also the ``ref_template`` they are generated with)."""

ERROR_TEXTS = {
    400: "Invalid request (see `details`)",
    401: "Missing or invalid token",
    403: "A signed stream (`playbackPolicy: signed`) without a valid playback `token`: "
    "missing, expired, for another stream or audience, or signed with an unknown or deleted key "
    "(the message is only `forbidden`)",
    404: "Not found (or another account's)",
    409: "Conflicts with the current state (see `code`)",
    413: "Request body too large",
    415: "Request body not declared JSON (`Content-Type` other than `application/json` or a "
    "`+json` type, or a charset other than UTF-8; no `Content-Type` is read as JSON)",
    502: "The stream is live on another node, which cannot be reached (code `owner_unreachable`)",
}


def ref(model: str) -> dict[str, str]:
    """A reference to the component schema of ``model``."""
    return {"$ref": REF.format(model=model)}


def json_response(description: str, model: str) -> dict[str, Any]:
    """A response whose JSON body is a ``model``."""
    return {"description": description, "content": {"application/json": {"schema": ref(model)}}}


def errors(*statuses: int, **texts: str) -> dict[str, Any]:
    """The standard error responses for ``statuses``; ``texts`` (``e409="..."``) replace the
    generic description of a status."""
    return {
        str(status): json_response(texts.get(f"e{status}", ERROR_TEXTS[status]), "ErrorOutput")
        for status in statuses
    }


def id_param(description: str, name: str = "id") -> dict[str, Any]:
    """A 24-hex path parameter."""
    schema = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def body(model: str) -> dict[str, Any]:
    """A required JSON request body of ``model``."""
    return {"required": True, "content": {"application/json": {"schema": ref(model)}}}
