"""Browser tests: the local stack's OpenSearch, and Debian's headless Chromium via Selenium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from pipeline.config.settings import Settings
from pipeline.local.stack import stack_up

# Debian's packages (chromium, chromium-driver), installed by deploy/bootstrap.sh. The
# driver path is given explicitly, so Selenium Manager never tries to download one.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
SKIP_REASON = (
    f"no headless browser: {', '.join(MISSING)} missing; "
    "install Debian's chromium and chromium-driver (deploy/bootstrap.sh does)"
)


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The local stack's OpenSearch (started if needed, left running); the UI needs no more."""
    settings = Settings()
    stack_up(settings, progress=False, only=["opensearch"])
    return settings


@pytest.fixture(scope="session")
def opensearch(stack: Settings) -> OpenSearch:
    return OpenSearch(hosts=[stack.opensearch_url])


@pytest.fixture(scope="session")
def chromium() -> Iterator[WebDriver]:
    """One headless Chromium for the session, with its console log readable."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to sandbox as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()
