"""Managing a stream and webhooks in the console, in a real browser: a webhook to a receiver on
loopback, the stream's settings with the API's field errors, restream targets added, edited and
removed with their state while live, the session history, and the recording that plays after a
push with ffmpeg and is deleted."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from aiohttp import web
from playwright.async_api import Browser, Dialog, Page, expect

from tests.browser.conftest import WAIT_MS, Operator
from tests.browser.test_console import sign_in
from tests.browser.test_console_list import add_streams, keyboard_sign_in
from tests.e2e.conftest import LiveServer, Publisher, free_port, push
from tests.polling import eventually


@pytest.fixture
def console_settings() -> dict[str, Any]:
    """Loopback webhook receivers and restream targets are allowed; failed outputs retry fast."""
    return {"allow_private_targets": True, "output_backoff_max_seconds": 1}


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 204 and keeps each event's type."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.types.append((await request.json())["type"])
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hooks.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield hooks
    finally:
        await runner.cleanup()


def accept(page: Page, question: str) -> None:
    """Accept the next confirmation, checking that it asks ``question``."""

    async def answer(dialog: Dialog) -> None:
        assert question in dialog.message
        await dialog.accept()

    page.once("dialog", answer)


async def api_get(page: Page, path: str) -> Any:
    """``GET path`` from the page, with its session cookie."""
    return await page.evaluate(
        "path => fetch(path, {headers: {'X-Liverelay-Console': '1'}}).then(r => r.json())", path
    )


async def create_webhook(page: Page, receiver: Receiver) -> None:
    await page.get_by_role("link", name="Webhooks").click()
    await expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_focused()
    await expect(page.get_by_text("No webhooks yet")).to_be_visible()
    await page.get_by_label("URL").fill("ftp://127.0.0.1/hooks")
    await page.get_by_role("button", name="Create webhook").click()
    await expect(page.locator("#f-url-error")).to_contain_text("http://")
    await expect(page.get_by_label("URL")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("URL").fill(receiver.url)
    await page.get_by_label("Events").fill("livestream.*")
    await page.get_by_role("button", name="Create webhook").click()
    secret_heading = page.get_by_role("heading", name=re.compile("copy its signing secret"))
    await expect(secret_heading).to_be_focused()
    await expect(page.locator("#webhook-secret")).to_have_text(re.compile(r"^whsec_[0-9a-f]{64}$"))
    await expect(page.get_by_role("button", name="Copy secret")).to_be_visible()
    await expect(page.locator("#f-url-error")).to_be_hidden()
    await expect(page.locator("#webhooks")).to_contain_text(receiver.url)
    # Shown once: the list (and a reload) never has it again.
    await page.reload()
    await expect(page.locator("#webhooks")).to_contain_text(receiver.url)
    await expect(page.locator("#webhook-secret")).to_have_count(0)


async def edit_settings(page: Page) -> None:
    duration = page.get_by_label("Maximum duration (seconds)")
    await duration.fill("10")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#f-maxDurationSeconds-error")).to_contain_text("60")
    await expect(duration).to_have_attribute("aria-invalid", "true")
    await duration.fill("600")
    await page.get_by_label("Reconnect window (seconds)").fill("0")
    await page.get_by_label("Name", exact=True).fill("Studio B")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_text("Settings saved")).to_be_visible()
    await expect(page.get_by_role("heading", name="Studio B")).to_be_visible()
    await page.reload()
    await expect(page.get_by_label("Reconnect window (seconds)")).to_have_value("0")
    await expect(page.get_by_label("Maximum duration (seconds)")).to_have_value("600")
    await expect(page.get_by_label("Record each live session")).to_be_checked()
    await expect(page.get_by_label("Latency mode")).to_have_value("low")  # the default, kept


async def add_and_edit_target(page: Page, stream_id: str, target: str) -> None:
    await expect(page.locator("#targets")).to_have_text("No restream targets.")
    await page.get_by_label("Target URL").fill("http://127.0.0.1/app")
    await page.get_by_label("Target stream key").fill("first")
    await page.get_by_role("button", name="Add target").click()
    await expect(page.locator("#f-url-error")).to_contain_text("rtmp://")
    await page.get_by_label("Target URL").fill(target)
    await page.get_by_role("button", name="Add target").click()
    row = page.locator("#targets tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator(".state")).to_have_text("idle")
    await expect(page.locator("#f-url-error")).to_be_hidden()

    await page.get_by_role("button", name=f"Edit {target}").click()
    await expect(page.get_by_label("Target URL")).to_be_focused()
    await expect(page.get_by_label("Target URL")).to_have_value(target)
    await page.get_by_label("Target stream key").fill("second")
    await page.get_by_role("button", name="Save target").click()
    await expect(page.get_by_role("button", name="Add target")).to_be_visible()

    async def key_changed() -> bool:
        stream = await api_get(page, f"/v1/livestreams/{stream_id}")
        return bool([t["streamKey"] for t in stream["restream"]] == ["second"])

    await eventually(key_changed, WAIT_MS / 1000, message="the target's key did not change")


async def test_webhook_settings_targets_history_and_recording(
    page: Page,
    console_server: LiveServer,
    operator: Operator,
    receiver: Receiver,
    camera: Path,
) -> None:
    server = console_server
    await sign_in(page, server, operator, operator.secret)
    await expect(page.get_by_role("heading", name="Streams")).to_be_visible()
    await create_webhook(page, receiver)

    await page.get_by_role("link", name="Streams", exact=True).click()
    await page.get_by_role("link", name="New stream").click()
    await page.get_by_label("Name").fill("Studio A")
    await page.get_by_label("Record the stream").check()
    await page.get_by_role("button", name="Create stream").click()
    await expect(page.get_by_role("heading", name="Studio A")).to_be_visible()
    stream_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#history")).to_have_text("No live sessions yet.")
    await expect(page.locator("#recordings")).to_have_text("No recordings yet.")
    await edit_settings(page)
    target = f"rtmp://127.0.0.1:{free_port()}/app"  # nothing listens: the relay keeps failing
    await add_and_edit_target(page, stream_id, target)

    key = (await api_get(page, f"/v1/livestreams/{stream_id}"))["streamKey"]
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    publisher = await push(
        ffmpeg, camera, f"rtmp://127.0.0.1:{server.rtmp_port}/live/{key}", loop=True
    )
    try:
        await expect(page.locator("#status")).to_have_text("● LIVE")
        row = page.locator("#targets tbody tr")
        await expect(row.locator(".state")).not_to_have_text("idle")
        await expect(row.locator(".last-error")).not_to_have_text("\u2013")  # a dash: none
        await asyncio.wait_for(receiver.arrived.wait(), WAIT_MS / 1000)
        assert receiver.types[0] == "livestream.started"

        async def recorded() -> bool:
            listing = await api_get(page, f"/v1/livestreams/{stream_id}/recordings")
            return bool(listing["data"] and listing["data"][0]["duration"] >= 3)

        await eventually(recorded, WAIT_MS / 1000, message="nothing was recorded")
    finally:
        await _stop(publisher)

    # The push ended (no reconnect window): the session and its recording are listed.
    await expect(page.locator("#status")).to_have_text("idle")
    await expect(page.locator("#history tbody tr")).to_have_count(1)
    await expect(page.locator("#history")).to_contain_text("Page 1 of 1")
    await expect(page.locator("#history")).not_to_contain_text("null")
    await expect(page.locator("#recordings tbody tr")).to_have_count(1)
    await expect(page.locator("#recordings tbody tr").first).to_contain_text("ready")
    await page.get_by_role("button", name=re.compile("^Play the recording")).click()
    await expect(page.locator("#recording-player")).to_be_focused()
    player = page.locator("#recording-player")

    async def played() -> bool:
        return bool(await player.evaluate("video => video.currentTime > 1"))

    await eventually(played, WAIT_MS / 1000, interval=0.2, message="the recording did not play")

    accept(page, "Delete the recording")
    await page.get_by_role("button", name=re.compile("^Delete the recording")).click()
    await expect(page.locator("#recordings")).to_have_text("No recordings yet.")
    accept(page, f"Remove the restream target {target}?")
    await page.get_by_role("button", name=f"Remove {target}").click()
    await expect(page.locator("#targets")).to_have_text("No restream targets.")

    # The webhook's deliveries: the stream went live, then ended.
    await page.get_by_role("link", name="Webhooks").click()
    await page.get_by_role("link", name=f"Deliveries of {receiver.url}").click()
    await expect(page.get_by_role("heading", name="Webhook deliveries")).to_be_focused()
    started = page.locator("#deliveries tbody tr").filter(has_text="livestream.started")
    await expect(started).to_contain_text("delivered")
    await expect(started.locator("td").nth(2)).to_have_text("1")
    await expect(page.locator("#deliveries")).to_contain_text("livestream.ended")
    await page.get_by_role("link", name="All webhooks").click()
    accept(page, f"Delete the webhook {receiver.url}?")
    await page.get_by_role("button", name=f"Delete the webhook {receiver.url}").click()
    await expect(page.get_by_text("No webhooks yet")).to_be_visible()


async def _stop(publisher: Publisher) -> None:
    if publisher.process.returncode is None:
        publisher.kill()
        await publisher.process.wait()


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 0, f"the page scrolls sideways on a narrow screen: {page.url}"


async def test_stream_and_webhook_pages_on_a_phone_with_the_keyboard(
    browser: Browser, console_server: LiveServer, operator: Operator, receiver: Receiver
) -> None:
    [stream_id] = await add_streams(console_server, operator, "Pocket studio")
    context = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    try:
        await page.goto(f"{console_server.http_url}/console/")
        await keyboard_sign_in(page, operator)
        await page.goto(f"{console_server.http_url}/console/#/streams/{stream_id}")
        await expect(page.get_by_role("heading", name="Pocket studio")).to_be_focused()
        target = "rtmp://a-rather-long-ingest-host-name.example.com/live2/with/a/long/path"
        await page.get_by_label("Target URL").focus()
        await page.keyboard.type(target)
        await page.keyboard.press("Tab")
        await page.keyboard.type("pocket-key")
        await page.keyboard.press("Enter")
        await expect(page.locator("#targets tbody tr")).to_have_count(1)
        await expect(page.locator("#recordings")).to_contain_text("recording is off")
        await no_sideways_scroll(page)

        await page.get_by_role("link", name="Webhooks").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_focused()
        await page.get_by_label("URL").focus()
        await page.keyboard.type(receiver.url + "/with/a/rather/long/path/for/a/narrow/screen")
        await page.keyboard.press("Enter")
        await expect(page.locator("#webhook-secret")).to_be_visible()
        await no_sideways_scroll(page)
        await page.get_by_role("link", name="See its deliveries").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Webhook deliveries")).to_be_focused()
        await expect(page.locator("#deliveries")).to_contain_text("No deliveries yet")
        await no_sideways_scroll(page)

        await page.goto(f"{console_server.http_url}/console/#/webhooks/{'0' * 24}")
        await expect(page.get_by_role("heading", name="Webhook not found")).to_be_visible()
    finally:
        await context.close()
