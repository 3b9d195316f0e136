"""The playback policy in the console: chosen when a stream is created, shown on the stream
page, changed in its settings; a signed stream's page asks for a playback token to play it."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.conftest import Operator
from tests.browser.test_console import sign_in
from tests.browser.test_console_manage import api_get
from tests.e2e.conftest import LiveServer


async def test_create_signed_then_make_public(
    page: Page, console_server: LiveServer, operator: Operator
) -> None:
    await sign_in(page, console_server, operator, operator.secret)
    await page.get_by_role("link", name="New stream").click()
    await expect(page.get_by_label("Playback")).to_have_value("public")  # the API's default
    await page.get_by_label("Name").fill("Members only")
    await page.get_by_label("Playback").select_option("signed")
    await page.get_by_role("button", name="Create stream").click()
    await expect(page.get_by_role("heading", name="Members only")).to_be_visible()
    stream_id = page.url.rsplit("/", 1)[-1]
    assert (await api_get(page, f"/v1/livestreams/{stream_id}"))["playbackPolicy"] == "signed"

    await expect(page.locator("#playback-policy")).to_have_text("signed")
    await expect(page.locator("#player-note")).to_contain_text("playback token")
    await expect(page.get_by_label("Playback")).to_have_value("signed")

    await page.get_by_label("Playback").select_option("public")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_text("Settings saved")).to_be_visible()
    await expect(page.locator("#playback-policy")).to_have_text("public")
    assert (await api_get(page, f"/v1/livestreams/{stream_id}"))["playbackPolicy"] == "public"
    await page.reload()
    await expect(page.get_by_label("Playback")).to_have_value("public")
    await expect(page.locator("#playback-policy")).to_have_text("public")
    await expect(page.locator("#player-note")).not_to_contain_text("playback token")
