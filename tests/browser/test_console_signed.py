"""A signed stream in the console: without a playback token the live player and the recordings'
Play say that a token is needed and load nothing; with a token pasted on the stream page
(minted here with a signing key made through the API) both play, every playlist, part and
segment request carrying it, and the token is gone once the page is left."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import imageio_ffmpeg
from playwright.async_api import Page, Response, expect

from api.playback_tokens import issue_playback_token
from tests.browser.conftest import WAIT_MS, Operator
from tests.browser.test_console import sign_in
from tests.browser.test_console_manage import api_get
from tests.e2e.conftest import LiveServer, Publisher, push
from tests.polling import eventually


async def api_post(page: Page, path: str, body: dict[str, Any]) -> Any:
    """``POST path`` from the page, with its session cookie and the console's header."""
    return await page.evaluate(
        """([path, body]) => fetch(path, {method: 'POST', body: JSON.stringify(body),
            headers: {'X-Liverelay-Console': '1', 'Content-Type': 'application/json'}})
            .then(r => r.json())""",
        [path, body],
    )


class Media:
    """The page's requests for a stream's or its recordings' media, and the refused ones."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.refused: list[str] = []
        page.on("response", self.seen)

    def seen(self, response: Response) -> None:
        if "/live/" in response.url or "/recordings/" in response.url:
            self.urls.append(response.url)
            if response.status == 403:
                self.refused.append(f"{response.status} {response.url}")


async def plays(page: Page, selector: str, what: str) -> None:
    player = page.locator(selector)

    async def advanced() -> bool:
        return bool(await player.evaluate("video => video.currentTime > 1.5"))

    # Polled: the page's CSP refuses the eval behind wait_for_function.
    await eventually(advanced, WAIT_MS / 1000, interval=0.2, message=f"{what} did not play")


async def test_a_signed_stream_plays_with_a_pasted_token_only(
    page: Page, console_server: LiveServer, operator: Operator, camera: Path
) -> None:
    server = console_server
    media = Media(page)
    await sign_in(page, server, operator, operator.secret)
    await expect(page.get_by_role("heading", name="Streams")).to_be_visible()
    stream = await api_post(
        page,
        "/v1/livestreams",
        {
            "name": "Members",
            "record": True,
            "playbackPolicy": "signed",
            "reconnectWindowSeconds": 0,
        },
    )
    key = await api_post(page, "/v1/signing-keys", {})
    token = issue_playback_token(stream["id"], key["id"], key["privateKey"], 600)
    other = issue_playback_token("0" * 24, key["id"], key["privateKey"], 600)
    gone = await api_post(page, "/v1/signing-keys", {})
    revoked = issue_playback_token(stream["id"], gone["id"], gone["privateKey"], 600)
    deleted = await page.evaluate(
        """path => fetch(path, {method: 'DELETE', headers: {'X-Liverelay-Console': '1'}})
            .then(r => r.status)""",
        f"/v1/signing-keys/{gone['id']}",
    )
    assert deleted == 200
    await page.goto(f"{server.http_url}/console/#/streams/{stream['id']}")
    await expect(page.get_by_role("heading", name="Members")).to_be_visible()

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    publisher = await push(
        ffmpeg, camera, f"rtmp://127.0.0.1:{server.rtmp_port}/live/{stream['streamKey']}", loop=True
    )
    try:
        await expect(page.locator("#status")).to_have_text("● LIVE")
        await expect(page.locator("#figures")).to_contain_text("h264")
        # No token: the page says so and loads nothing (no refused request, no broken player).
        await expect(page.locator("#player-note")).to_contain_text("playback token")
        assert await page.locator("#player").get_attribute("src") is None
        assert await page.locator("#player").get_attribute("poster") is None
        token_input = page.get_by_label("Viewer token")
        await expect(token_input).to_be_visible()

        # A token for another stream is caught before anything is asked of the server.
        await token_input.fill(other)
        await page.get_by_role("button", name="Play with token").click()
        await expect(page.locator("#f-viewerToken-error")).to_contain_text("another stream")
        await expect(token_input).to_have_attribute("aria-invalid", "true")

        # One whose key was deleted is refused by the server: said once, not tried again.
        await token_input.fill(revoked)
        await page.get_by_role("button", name="Play with token").click()
        await expect(page.locator("#f-viewerToken-error")).to_be_hidden()
        await expect(page.locator("#player-note")).to_contain_text("was refused")
        assert media.refused != []
        media.refused.clear()

        await token_input.fill(token)
        await page.get_by_role("button", name="Play with token").click()
        await plays(page, "#player", "the live player")
        poster = await page.locator("#player").get_attribute("poster")
        assert poster is not None and f"token={token}" in poster

        async def recorded() -> bool:
            listing = await api_get(page, f"/v1/livestreams/{stream['id']}/recordings")
            return bool(listing["data"] and listing["data"][0]["duration"] >= 3)

        await eventually(recorded, WAIT_MS / 1000, message="nothing was recorded")
    finally:
        await _stop(publisher)
    live_media = [url for url in media.urls if f"/live/{stream['id']}/" in url]
    assert all("?token=" in url for url in live_media), live_media  # never without one
    names = [url.split("?")[0].rsplit("/", 1)[-1] for url in live_media if token in url]
    assert any("-part-" in name for name in names) and "index.m3u8" in names, names

    # Leaving the page forgets the token: the recording then says it needs one.
    await page.reload()
    await expect(page.locator("#status")).to_have_text("idle")
    await expect(page.get_by_label("Viewer token")).to_have_value("")
    await expect(page.locator("#recordings tbody tr").first).to_contain_text("ready")
    play = page.get_by_role("button", name=re.compile("^Play the recording"))
    await play.click()
    await expect(page.locator("#recording-note")).to_contain_text("playback token")
    await expect(page.locator("#recording-player")).to_be_hidden()
    await expect(page.get_by_label("Viewer token")).to_be_focused()
    assert media.refused == []

    await page.get_by_label("Viewer token").fill(token)
    await page.get_by_role("button", name="Play with token").click()
    await play.click()
    await expect(page.locator("#recording-player")).to_be_focused()
    await plays(page, "#recording-player", "the recording")
    recorded_media = [url for url in media.urls if "/recordings/" in url]
    assert recorded_media and all(f"token={token}" in url for url in recorded_media)
    assert media.refused == []
    assert token not in page.url
    stored = "Object.keys(localStorage).length + Object.keys(sessionStorage).length"
    assert await page.evaluate(stored) == 0


async def _stop(publisher: Publisher) -> None:
    if publisher.process.returncode is None:
        publisher.kill()
        await publisher.process.wait()
