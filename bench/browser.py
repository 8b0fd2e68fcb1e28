"""The API app served on a loopback port and a headless Chromium to open the board with:
what `bench.board` and tests/test_board_browser.py both need."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import uvicorn

from scripts.local.services import free_port

if TYPE_CHECKING:
    from playwright.async_api import Browser

__all__ = ["CHROMIUM", "chromium", "served"]

# Debian's chromium (apt-get install -y chromium), driven by Playwright.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` served by uvicorn in this process on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # it failed to start: raise why
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium (`CHROMIUM`), closed on the way out."""
    # Imported here: the tests skip, rather than fail to import, without Playwright.
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
