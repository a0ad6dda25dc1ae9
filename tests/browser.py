"""A real headless Chromium, driven by selenium through Debian's ``chromium`` and
``chromium-driver`` (no browser can be downloaded here; ``.ci/run`` installs both)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _found() -> tuple[str, str]:
    """The browser's and its driver's paths; skip, saying why, where either is missing."""
    browser = next((p for p in map(shutil.which, _BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "no Chromium found (chromium and chromedriver on PATH): "
            "apt-get install chromium chromium-driver"
        )
    return browser, driver


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with its own profile in ``profile``, kept off every network but
    loopback's (no updates, no sync, no safe-browsing lookups)."""
    browser, driver = _found()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,2000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    session = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield session
    finally:
        session.quit()


def wait_for_plot(session: webdriver.Chrome, div_id: str, timeout: float = 60) -> None:
    """Wait until plotly has drawn into ``#div_id`` (an ``svg`` or ``canvas`` inside it)."""
    WebDriverWait(session, timeout).until(
        lambda s: s.find_elements(By.CSS_SELECTOR, f"#{div_id} svg, #{div_id} canvas"),
        f"no svg or canvas drawn in #{div_id} of {session.current_url}",
    )


def wait_for_text(session: webdriver.Chrome, text: str, timeout: float = 60) -> None:
    """Wait until ``text`` is on the page's visible body."""
    WebDriverWait(session, timeout).until(
        lambda s: text in s.find_element(By.TAG_NAME, "body").text,
        f"{text!r} is not on {session.current_url}",
    )
