"""Checking the API against its OpenAPI document: the routed operations, the documented ones,
and responses validated against the document's schemas (a small validator: ``jsonschema`` is
not a dependency)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def routed_operations(app: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        operations.add((route.method.lower(), str(path)))
    return operations


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def check(value: Any, schema: dict[str, Any], document: dict[str, Any], at: str = "$") -> None:
    """Validate ``value`` against the subset of JSON Schema the document uses."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "boolean": bool,
        "number": (int, float),
    }
    if "type" in schema:
        assert isinstance(value, kinds[schema["type"]]), f"{at}: not {schema['type']}"
        if schema["type"] in ("integer", "number"):
            assert not isinstance(value, bool), f"{at}: bool is not {schema['type']}"
    if "const" in schema:
        assert value == schema["const"], f"{at}: != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{at}: not in {schema['enum']}"
    if "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{at}: does not match {schema['pattern']}"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            assert key in value, f"{at}: missing {key}"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties), f"{at}: extra {set(value) - set(properties)}"
        for key, item in value.items():
            if key in properties:
                check(item, properties[key], document, f"{at}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            check(item, schema["items"], document, f"{at}[{index}]")


async def fetch_document(client: TestClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status == 200
    document: dict[str, Any] = await response.json()
    return document


async def assert_matches_spec(
    document: dict[str, Any], method: str, path: str, response: Any
) -> Any:
    operation = document["paths"][path][method]
    assert str(response.status) in operation["responses"], (method, path, response.status)
    spec = operation["responses"][str(response.status)]["content"]["application/json"]
    body = await response.json()
    check(body, spec["schema"], document)
    return body
