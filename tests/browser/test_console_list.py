"""The console's streams list (search, paging, refreshing itself), keyboard use on a phone-sized
viewport, and the clear messages it shows instead of a blank page."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Dialog, Page, Route, expect
from sqlalchemy import delete

from api import queries
from api.keys import DB_SESSIONMAKER
from api.models import ConsoleSession
from tests.browser.conftest import WAIT_MS, Operator
from tests.e2e.conftest import LiveServer, serving


async def add_streams(server: LiveServer, operator: Operator, *names: str) -> list[str]:
    """Create streams of ``operator`` directly in the database; returns their ids."""
    async with server.app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.get_active_account(session, operator.apikey)
        assert account is not None
        streams = [
            await queries.create_live_stream(session, account.id, n, False, []) for n in names
        ]
    return [s.id for s in streams]


async def keyboard_sign_in(page: Page, operator: Operator) -> None:
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("API key").focus()
    await page.keyboard.type(operator.apikey)
    await page.keyboard.press("Tab")
    await page.keyboard.type(operator.secret)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Streams")).to_be_visible()


async def test_search_paging_and_refresh_on_a_phone_with_the_keyboard(
    browser: Browser, console_server: LiveServer, operator: Operator
) -> None:
    server = console_server
    await add_streams(server, operator, *(f"camera {n:02}" for n in range(21)), "Special event")
    context = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    try:
        await page.goto(f"{server.http_url}/console/")
        await keyboard_sign_in(page, operator)
        rows = page.locator("tbody tr")
        await expect(rows).to_have_count(20)
        await expect(page.get_by_text("Page 1 of 2")).to_be_visible()
        width = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert width <= 0, "the list scrolls sideways on a narrow screen"

        await page.get_by_role("link", name="Next →").click()
        await expect(page.get_by_text("Page 2 of 2")).to_be_visible()
        await expect(rows).to_have_count(2)

        await page.get_by_label("Search by name").fill("special")
        await page.keyboard.press("Enter")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("Special event")
        await expect(rows.first).to_contain_text("idle")

        # The list refreshes itself: a stream created elsewhere appears.
        await add_streams(server, operator, "Special guest")
        await expect(rows).to_have_count(2)
    finally:
        await context.close()


async def test_a_stream_deleted_in_another_tab_says_so(
    page: Page, console_server: LiveServer, operator: Operator
) -> None:
    [stream_id] = await add_streams(console_server, operator, "Doomed")
    await page.goto(f"{console_server.http_url}/console/#/streams/{stream_id}")
    await keyboard_sign_in(page, operator)
    await page.goto(f"{console_server.http_url}/console/#/streams/{stream_id}")
    await expect(page.get_by_role("heading", name="Doomed")).to_be_visible()
    other = await page.context.new_page()
    await other.goto(f"{console_server.http_url}/console/#/streams/{stream_id}")

    async def confirm(dialog: Dialog) -> None:
        await dialog.accept()

    other.once("dialog", confirm)
    await other.get_by_role("button", name="Delete stream").click()
    await expect(other.locator("#notice")).to_have_text("Stream “Doomed” deleted.")
    await expect(page.get_by_role("heading", name="Stream not found")).to_be_visible()


async def test_without_npm_ci_the_player_says_how_to_install_it(
    browser: Browser, tmp_path: Path, sqlite_url: str
) -> None:
    async with serving(tmp_path, sqlite_url, console_vendor_dir=tmp_path / "empty") as server:
        async with server.app[DB_SESSIONMAKER]() as session, session.begin():
            account = await queries.create_account(session, "No player")
        operator = Operator(account.apikey, account.secret, account.name)
        await add_streams(server, operator, "Unplayable")
        context = await browser.new_context()
        context.set_default_timeout(WAIT_MS)
        page = await context.new_page()
        try:
            await page.goto(f"{server.http_url}/console/")
            await keyboard_sign_in(page, operator)
            await page.get_by_role("link", name="Unplayable").click()
            await expect(page.locator("#player-note")).to_contain_text("run `npm ci`")
        finally:
            await context.close()


async def test_an_unavailable_api_and_an_ended_session_get_clear_messages(
    page: Page, console_server: LiveServer, operator: Operator
) -> None:
    await add_streams(console_server, operator, "Steady")
    await page.goto(f"{console_server.http_url}/console/")
    await keyboard_sign_in(page, operator)
    await expect(page.locator("tbody tr")).to_have_count(1)

    unavailable = {
        "status": 503,
        "code": "service_unavailable",
        "message": "database unavailable, try again",
        "details": [],
        "requestId": "r",
    }

    async def answer_503(route: Route) -> None:
        await route.fulfill(status=503, json=unavailable, headers={"Retry-After": "5"})

    await page.route("**/v1/livestreams?*", answer_503)
    await expect(page.locator("#notice")).to_contain_text("database unavailable, try again")
    await expect(page.locator("#notice")).to_contain_text("unavailable for now")
    await expect(page.locator("tbody tr")).to_have_count(1)  # what was shown stays
    await page.unroute("**/v1/livestreams?*", answer_503)

    # The session ends elsewhere (sign-out in another browser, expiry): back to sign-in.
    async with console_server.app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.get_active_account(session, operator.apikey)
        assert account is not None
        await session.execute(delete(ConsoleSession).where(ConsoleSession.account_id == account.id))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.locator("#notice")).to_have_text("Your session has ended: sign in again.")
