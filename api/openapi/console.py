"""The operator console's paths in the OpenAPI document: its sign-in session and its static
files (:mod:`api.console.routes`)."""

from __future__ import annotations

from typing import Any

from api.openapi.parts import json_response

_CSRF = {
    "name": "X-Liverelay-Console",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "const": "1"},
    "description": "The console's CSRF header: without it the request is refused (403).",
}
_SESSION = {
    "type": "object",
    "required": ["user", "apikey", "expiresAt"],
    "properties": {
        "user": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
        },
        "apikey": {"type": "string"},
        "expiresAt": {"type": "string", "format": "date-time"},
    },
}
_SIGN_IN = {
    "type": "object",
    "description": "An API key and its secret, or a token (JWT) instead.",
    "properties": {
        "apikey": {"type": "string"},
        "secret": {"type": "string"},
        "token": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return json_response(description, "ErrorOutput")


def _session(summary: str) -> dict[str, Any]:
    return {"description": summary, "content": {"application/json": {"schema": _SESSION}}}


def _static(op_id: str, summary: str, media_type: str) -> dict[str, Any]:
    ok = {"description": summary, "content": {media_type: {"schema": {"type": "string"}}}}
    return {"operationId": op_id, "summary": summary, "responses": {"200": ok}}


def console_paths() -> dict[str, Any]:
    """``/console/session`` and the console's pages."""
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["index.html", "app.js", "app.css"]},
        "description": "A file of the console.",
    }
    page = _static("consoleFile", "A file of the console", "text/html")
    text = {"schema": {"type": "string"}}
    page["responses"]["200"]["content"].update({"text/javascript": text, "text/css": text})
    page["responses"]["404"] = _error("No such console file")
    hls = _static(
        "consoleHls", "hls.js, from `node_modules` (installed by `npm ci`)", "text/javascript"
    )
    hls["responses"]["404"] = _error("hls.js is not installed: run `npm ci`")
    return {
        "/console/session": {
            "post": {
                "operationId": "consoleSignIn",
                "summary": "Sign in to the console: sets the session cookie",
                "description": "Sets `liverelay_console` (`HttpOnly`, `SameSite=Strict`, `Secure` "
                "behind an https public URL), which then authenticates `/v1` instead of "
                "`Authorization`; requests that change anything must also send "
                "`X-Liverelay-Console: 1`. Refused credentials count towards "
                "LIVERELAY_RTMP_AUTH_FAILURES_PER_MINUTE per client address.",
                "parameters": [_CSRF],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _SIGN_IN}},
                },
                "responses": {
                    "200": _session("Signed in; the cookie is set"),
                    "400": _error("A field is missing or not a string (see `details`)"),
                    "401": _error("Wrong API key or secret, or an invalid token"),
                    "403": _error("The `X-Liverelay-Console` header is missing"),
                    "413": _error("Request body too large"),
                    "415": _error("Request body not declared JSON"),
                    "429": _error("Too many refused sign-ins from this address (`Retry-After`)"),
                },
            },
            "get": {
                "operationId": "consoleSession",
                "summary": "Who is signed in (by the session cookie)",
                "responses": {
                    "200": _session("The signed-in account"),
                    "401": _error("Not signed in, or the session ended"),
                },
            },
            "delete": {
                "operationId": "consoleSignOut",
                "summary": "Sign out: the session ends on every node",
                "parameters": [_CSRF],
                "responses": {
                    "204": {"description": "Signed out; the cookie is cleared"},
                    "403": _error("The `X-Liverelay-Console` header is missing"),
                },
            },
        },
        "/console": {
            "get": {
                "operationId": "consoleRedirect",
                "summary": "Redirect to /console/",
                "responses": {"301": {"description": "To /console/"}},
            }
        },
        "/console/": {"get": _static("consolePage", "The console's page", "text/html")},
        "/console/vendor/hls.min.js": {"get": hls},
        "/console/{name}": {"parameters": [name], "get": page},
    }
