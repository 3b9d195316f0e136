"""The console's encoder settings with the RTMPS ingest on: the RTMPS server is shown beside
the RTMP one, with its own copy button."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Operator
from tests.browser.test_console import sign_in
from tests.e2e.conftest import LiveServer
from tests.tls_support import make_certificate


@pytest.fixture
def console_settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """RTMPS on, with a test certificate."""
    files = make_certificate(Path(tmp_path_factory.mktemp("tls")), "console")
    return {
        "rtmps_port": 0,
        "tls_cert_file": str(files.cert),
        "tls_key_file": str(files.key),
        "public_rtmps_url": "rtmps://live.example.com",
    }


async def test_the_rtmps_server_is_shown_with_the_rtmp_one(
    page: Page, console_server: LiveServer, operator: Operator
) -> None:
    await sign_in(page, console_server, operator, operator.secret)
    await page.get_by_role("link", name="New stream").click()
    await page.get_by_label("Name").fill("Secure studio")
    await page.get_by_role("button", name="Create stream").click()
    await expect(page.get_by_role("heading", name="Secure studio")).to_be_visible()
    rtmp = f"rtmp://127.0.0.1:{console_server.rtmp_port}/live"
    await expect(page.locator("#server")).to_have_text(rtmp)
    await expect(page.locator("#secure-server")).to_have_text("rtmps://live.example.com/live")
    await expect(page.get_by_role("button", name="Copy RTMPS server")).to_be_visible()
