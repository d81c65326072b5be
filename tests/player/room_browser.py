"""A room page open in headless Debian Chromium (Playwright drives it; no browser download)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


@contextlib.asynccontextmanager
async def room_page(url: str, timeout_ms: int = 10_000) -> AsyncIterator[tuple[Any, list[str]]]:
    """(page, JavaScript errors seen) once the page at ``url`` is connected to the server."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 560})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url)
            await page.wait_for_function("window.s2stStats && window.s2stStats.connected",
                                         timeout=timeout_ms)
            yield page, errors
        finally:
            await browser.close()
