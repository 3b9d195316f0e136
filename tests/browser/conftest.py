"""Fixtures of the browser tests: Debian's Chromium driven by playwright, and the whole app on
loopback with an account to sign in with.

Playwright is pointed at the system Chromium (``/usr/bin/chromium``, or
``LIVERELAY_TEST_CHROMIUM``) and never downloads a browser. A missing Chromium, or hls.js not
installed by ``npm ci``, fails the tests with how to fix it; they are not skipped.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from api import queries
from api.console.routes import vendor_dir
from api.keys import DB_SESSIONMAKER
from tests.e2e.conftest import LiveServer, make_source, serving

CHROMIUM = os.environ.get("LIVERELAY_TEST_CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 20_000
"""Longest wait for anything the browser shows (playwright timeouts are in milliseconds)."""
expect.set_options(timeout=WAIT_MS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@dataclass(frozen=True)
class Operator:
    """An account to sign in to the console with."""

    apikey: str
    secret: str
    name: str


@pytest.fixture(scope="session")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short FLV like an encoder pushes (looped by the publisher)."""
    directory = tmp_path_factory.mktemp("console-source")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    return make_source(ffmpeg, directory / "av.flv", video=True, audio=True, seconds=4)


@pytest.fixture
def console_settings() -> dict[str, Any]:
    """Overrides of the settings of :func:`console_server` (a module redefines this fixture)."""
    return {}


@pytest.fixture
async def console_server(
    tmp_path: Path, sqlite_url: str, console_settings: dict[str, Any]
) -> AsyncIterator[LiveServer]:
    """The whole service on loopback (SQLite) with its console."""
    async with serving(tmp_path, sqlite_url, **console_settings) as live:
        if vendor_dir(live.settings) is None:
            pytest.fail("hls.js is not installed: run `npm ci` in the repository (README set-up)")
        yield live


@pytest.fixture
async def operator(console_server: LiveServer) -> Operator:
    async with console_server.app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.create_account(session, "Console operator")
    return Operator(account.apikey, account.secret, account.name)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Chromium, headless; fails (never skips) when it is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it (Debian: apt-get install -y chromium; "
            ".ci/run does) or set LIVERELAY_TEST_CHROMIUM to its path"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(WAIT_MS)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A page that fails the test on any script error or CSP violation."""
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    assert problems == [], problems
