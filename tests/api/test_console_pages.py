"""The console's static files: served from the package under a strict CSP, and hls.js from
``node_modules`` or a 404 saying how to install it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from config import Settings
from tests.api.conftest import assert_error


async def test_pages_are_served_with_a_strict_policy(api_client: TestClient) -> None:
    redirect = await api_client.get("/console", allow_redirects=False)
    assert redirect.status == 301
    assert redirect.headers["Location"] == "/console/"
    for path, content_type in (
        ("/console/", "text/html"),
        ("/console/index.html", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/streams.js", "text/javascript"),
        ("/console/stream.js", "text/javascript"),
        ("/console/webhooks.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ):
        response = await api_client.get(path)
        assert response.status == 200, path
        assert response.content_type == content_type
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "media-src 'self' blob:" in policy and "worker-src blob:" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = await (await api_client.get("/console/")).text()
    assert "<script>" not in page and "style=" not in page  # nothing inline for the CSP to refuse
    await assert_error(await api_client.get("/console/secrets.txt"), 404, "not_found")
    await assert_error(await api_client.get("/console/..%2Fapp.py"), 404, "not_found")


async def test_hls_js_comes_from_node_modules(
    aiohttp_client: AiohttpClient, app_settings: Settings, tmp_path: Path
) -> None:
    vendor = tmp_path / "node_modules"
    (vendor / "hls.js" / "dist").mkdir(parents=True)
    (vendor / "hls.js" / "dist" / "hls.min.js").write_text("/* hls */")
    client = await aiohttp_client(
        create_app(dataclasses.replace(app_settings, console_vendor_dir=vendor))
    )
    response = await client.get("/console/vendor/hls.min.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert await response.text() == "/* hls */"
    assert "Content-Security-Policy" in response.headers


async def test_missing_hls_js_says_how_to_install_it(
    aiohttp_client: AiohttpClient, app_settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(app_settings, console_vendor_dir=tmp_path / "empty")
    client = await aiohttp_client(create_app(settings))
    error = await assert_error(await client.get("/console/vendor/hls.min.js"), 404, "not_found")
    assert "npm ci" in error["message"]
