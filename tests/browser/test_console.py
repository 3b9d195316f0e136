"""The operator console in a real browser: sign in, create a stream, push to it with ffmpeg,
watch it go live and play, reset its key, sign out."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import imageio_ffmpeg
from playwright.async_api import Dialog, Page, expect

from tests.api.conftest import UUID4
from tests.browser.conftest import WAIT_MS, Operator
from tests.e2e.conftest import LiveServer, Publisher, push
from tests.polling import eventually


async def sign_in(page: Page, server: LiveServer, operator: Operator, secret: str) -> None:
    await page.goto(f"{server.http_url}/console/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("API key").fill(operator.apikey)
    await page.get_by_label("Secret").fill(secret)
    await page.get_by_role("button", name="Sign in").click()


async def test_wrong_credentials_show_a_clear_message(
    page: Page, console_server: LiveServer, operator: Operator
) -> None:
    await sign_in(page, console_server, operator, "not-the-secret")
    await expect(
        page.get_by_role("alert").filter(has_text="wrong API key or secret")
    ).to_be_visible()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert (
        await page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length")
        == 0
    )


async def test_create_push_watch_reset_and_sign_out(
    page: Page,
    console_server: LiveServer,
    operator: Operator,
    camera: Path,
    tmp_path: Path,
) -> None:
    server = console_server
    await sign_in(page, server, operator, operator.secret)
    await expect(page.get_by_role("heading", name="Streams")).to_be_visible()
    await expect(page.get_by_text("No streams yet")).to_be_visible()

    # Create: the API's field error is shown next to the field, then a valid stream.
    await page.get_by_role("link", name="New stream").click()
    await page.get_by_label("Name").fill("   ")
    await page.get_by_role("button", name="Create stream").click()
    await expect(page.locator("#f-name-error")).to_contain_text("blank")
    await page.get_by_label("Name").fill("Studio A")
    await page.get_by_role("button", name="Create stream").click()
    await expect(page.get_by_role("heading", name="Studio A")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("idle")
    await expect(page.locator("#server")).to_have_text(f"rtmp://127.0.0.1:{server.rtmp_port}/live")
    await expect(page.locator("#secure-server")).to_have_count(0)  # no RTMPS ingest

    # The key is hidden until revealed.
    key = page.locator("#stream-key")
    await expect(key).to_have_text("••••••••")
    await page.get_by_role("button", name="Reveal").click()
    old_key = (await key.text_content() or "").strip()
    assert len(old_key) == 36

    # Push with ffmpeg: the badge turns live and the player plays.
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    publisher = await push(
        ffmpeg, camera, f"rtmp://127.0.0.1:{server.rtmp_port}/live/{old_key}", loop=True
    )
    try:
        await expect(page.locator("#status")).to_have_text("● LIVE")
        await expect(page.locator("#figures")).to_contain_text("h264")
        await expect(page.locator("#figures")).to_contain_text("640\u00d7360")
        # Polled from here: the page's CSP refuses the eval behind wait_for_function.
        player = page.locator("#player")

        async def played() -> bool:
            return bool(await player.evaluate("video => video.currentTime > 1.5"))

        await eventually(played, WAIT_MS / 1000, interval=0.2, message="the player did not play")
        # The live thumbnail stands in the player as its poster.
        poster = await player.get_attribute("poster")
        assert poster is not None and poster.endswith("/thumbnail.jpg?width=640")
        answer = await page.evaluate(
            f"fetch({poster!r}).then(r => [r.status, r.headers.get('Content-Type')])"
        )
        assert answer == [200, "image/jpeg"]
        await page.get_by_role("button", name="Hide").click()
        await expect(key).to_have_text("••••••••")
        await page.screenshot(path=str(tmp_path / "stream-live.png"), full_page=True)

        # Reset the key behind a confirmation: a new key, the publisher of the old one goes.
        async def confirm(dialog: Dialog) -> None:
            assert "Reset the stream key?" in dialog.message
            await dialog.accept()

        page.once("dialog", confirm)
        await page.get_by_role("button", name="Reset stream key").click()
        await expect(page.locator("#notice")).to_be_hidden()
        await page.get_by_role("button", name="Reveal").click()
        await expect(key).to_have_text(UUID4)
        await expect(key).not_to_have_text(old_key)
        code, _ = await publisher.finish(timeout=WAIT_MS / 1000)
        assert code != 0  # disconnected, not at the end of an endless loop
    finally:
        await _stop(publisher)
    refused = await push(
        ffmpeg, camera, f"rtmp://127.0.0.1:{server.rtmp_port}/live/{old_key}", realtime=False
    )
    try:
        code, _ = await refused.finish(timeout=WAIT_MS / 1000)
        assert code != 0
    finally:
        await _stop(refused)

    # Sign out: the page says so and the session's API calls fail, in the page and outside it.
    cookie = next(c for c in await page.context.cookies() if c["name"] == "liverelay_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.locator("#notice")).to_have_text("Signed out.")
    status = await page.evaluate(
        "fetch('/v1/livestreams', {headers: {'X-Liverelay-Console': '1'}}).then(r => r.status)"
    )
    assert status == 401
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.http_url}/v1/livestreams",
            headers={"Cookie": f"liverelay_console={cookie['value']}"},
        ) as response,
    ):
        assert response.status == 401


async def _stop(publisher: Publisher) -> None:
    if publisher.process.returncode is None:
        publisher.kill()
        await publisher.process.wait()
