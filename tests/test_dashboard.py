"""The operations dashboard in a real browser (Debian's chromium driven by Playwright), against a
real server on 127.0.0.1 with the TRIGGER III demo loaded: what a person signing in would see.

Screenshots go to test-artifacts/. Without chromium or Playwright the test is skipped, except in CI
(CI=true), where it fails: .ci/run installs chromium.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.conftest import Tokens
from tracing.api.app import create_app
from tracing.config import Settings
from tracing.demo import load_demo

CHROMIUM = os.environ.get("TRACING_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _browser_or_skip() -> None:
    missing = None
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        missing = f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free 127.0.0.1 port, in a thread with its own event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
async def browser_page() -> AsyncIterator[object]:
    _browser_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(20_000)
            yield page
        finally:
            await browser.close()


async def test_dashboard_shows_an_operations_figures_after_sign_in(
    live_server: str, browser_page: object, settings: Settings, tokens: Tokens, backend: str
) -> None:
    from playwright.async_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    await load_demo(settings)
    token = tokens.headers("NE-NCP", "NE", "operations", sub="analyst.ne")["Authorization"].removeprefix(
        "Bearer "
    )

    await page.goto(f"{live_server}/dashboard")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()

    await expect(page.locator("#scope")).to_have_value("TRIGGER-III")
    cards = page.locator("#cards")
    await expect(cards.locator(".card", has_text="Trace requests")).to_contain_text("50")
    await expect(cards.locator(".card", has_text="Firearms recovered")).to_contain_text("130")
    await expect(cards.locator(".card", has_text="Response rate")).to_contain_text("%")
    await expect(cards.locator(".card", has_text="Overdue")).to_contain_text("past a deadline")
    await expect(page.locator("#scope-note")).to_contain_text("BJ BF TD GN ML MR NE NG")

    bars = page.locator("#chart svg rect")
    assert await bars.count() >= 8
    await expect(page.locator("#chart")).to_contain_text("weeks from 2017-11-20")
    await expect(page.locator("#legend")).to_contain_text("closed")

    rows = page.locator("#countries tbody tr")
    assert await rows.count() == 10  # ten countries of manufacture were asked
    russia = rows.filter(has_text="RU")
    await expect(russia.locator("td").nth(1)).to_have_text("8")
    await expect(russia.locator("td").nth(5)).to_contain_text("days")

    await expect(page.locator("#sdg-country")).to_have_value("NE")
    await expect(page.locator("#sdg-year")).to_have_value("2017")
    await expect(page.locator("#sdg")).to_contain_text("of arms recovered in NE in 2017")
    async with httpx.AsyncClient(base_url=live_server, headers={"Authorization": f"Bearer {token}"}) as api:
        sdg = (await api.get("/v1/stats/sdg-16-4-2", params={"country": "NE", "year": 2017})).json()
        own = (await api.get("/v1/stats")).json()
    assert 0 < sdg["proportion"] < 1
    await expect(page.locator("#sdg .sdg-value")).to_have_text(f"{sdg['proportion'] * 100:.1f}%")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"dashboard-{backend}.png", full_page=True)

    # the caller's own country's requests instead of the operation
    await page.locator("#scope").select_option("")
    await expect(page.locator("#scope-note")).to_contain_text("Trace requests NE filed or received")
    await expect(cards.locator(".card", has_text="Trace requests")).to_contain_text(
        str(own["total_requests"])
    )

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_dashboard_says_why_a_token_is_refused(live_server: str, browser_page: object) -> None:
    from playwright.async_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    await page.goto(f"{live_server}/dashboard")
    await page.get_by_label("Token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Your token was refused")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_dashboard_page_and_assets_are_served_by_the_app(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'src="/dashboard/assets/dashboard.js"' in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "") and "https://" not in page.text
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = await client.get(f"/dashboard/assets/{name}")
        assert (asset.status_code, asset.headers["content-type"].split(";")[0]) == (200, kind)
        assert "https://" not in asset.text
    assert (await client.get("/dashboard/assets/..%2Fapp.py")).status_code == 404
