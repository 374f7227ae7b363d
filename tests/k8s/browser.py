"""Headless Chromium for the page's browser tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's own browser downloads are never used (`playwright install` needs the network and
puts a second Chromium on the machine); the system one is launched through `executable_path`.
A missing Chromium fails the test in CI and skips it elsewhere, like the other test services.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from sundial.devstack.controlplane import find_repo_root
from tests.conftest import unavailable

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VIEWPORT = {"width": 1280, "height": 860}


def chromium_executable() -> str | None:
    """`SUNDIAL_CHROMIUM`, else the first Chromium on PATH."""
    configured = os.environ.get("SUNDIAL_CHROMIUM")
    if configured:
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    executable = chromium_executable()
    if executable is None:
        reason = "headless Chromium not found (apt-get install chromium fonts-dejavu-core, or set SUNDIAL_CHROMIUM)"
        unavailable(reason, "browser")
    return executable


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = require_chromium()
    # Chromium refuses to run as root with its sandbox on.
    # (Native <input type=time> fields follow Chromium's own UI locale, which is en-US unless the
    # chromium-l10n package is installed; the page itself follows its lang switch.)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page_context(browser: Browser, **options: object) -> Iterator[BrowserContext]:
    """A fresh context (own storage): pt-BR, São Paulo time, the test viewport."""
    settings: dict[str, object] = {
        "viewport": VIEWPORT,
        "locale": "pt-BR",
        "timezone_id": "America/Sao_Paulo",
        **options,
    }
    context = browser.new_context(**settings)  # type: ignore[arg-type]
    try:
        yield context
    finally:
        context.close()


def artifacts_dir() -> Path:
    """Where screenshots go: `SUNDIAL_TEST_ARTIFACTS`, default `<repo>/.artifacts/screenshots`."""
    configured = os.environ.get("SUNDIAL_TEST_ARTIFACTS")
    directory = Path(configured) if configured else find_repo_root() / ".artifacts" / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Screenshots:
    """Numbered full-page screenshots for one test: `<dir>/<test>/01-what.png`."""

    def __init__(self, test_name: str) -> None:
        self.directory = artifacts_dir() / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        if self.directory.exists():
            for old in self.directory.glob("*.png"):
                old.unlink()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def take(self, page: Page, what: str, *, full_page: bool = True) -> Path:
        """The whole page, or just the viewport while a modal dialog is open (a full-page shot
        would show the page around the dialog without its backdrop)."""
        self.count += 1
        path = self.directory / f"{self.count:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', what)}.png"
        modal_open = page.locator("dialog[open]").count() > 0
        page.screenshot(path=str(path), full_page=full_page and not modal_open, animations="disabled")
        return path
