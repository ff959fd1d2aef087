"""The live page on a real sidecar: its JSON over HTTP, and the page itself in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` packages and the
``selenium`` package (dev extra); it skips, saying which is missing, when they are not there.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import SidecarHarness, sidecar_harness

PLUGINS = """
- type: blocklist
  id: competitors
  mode: shadow
  keywords: [globex]
  scan_response: false
- type: blocklist
  id: secrets
  patterns: ['sk-[a-z]{10,}']
  action: redact
"""


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, PLUGINS) as h:
        yield h


def _chat(h: SidecarHarness, text: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    assert httpx.post(f"{h.v1}/chat/completions", json=body, timeout=10).status_code == 200


def _rules(h: SidecarHarness) -> dict[str, Any]:
    data = httpx.get(f"{h.base_url}/admin/live.json").json()
    return {f"{r['plugin']}/{r['rule']}": r for r in data["rules"]}


def test_live_json_counts_shadow_and_enforce_decisions(harness: SidecarHarness) -> None:
    _chat(harness, "is globex hiring?")
    _chat(harness, "globex again, key sk-abcdefghijkl")
    _chat(harness, "nothing to see")
    data = httpx.get(f"{harness.base_url}/admin/live.json").json()
    assert sum(m["requests"] for m in data["minutes"]) == 3  # whichever minutes they fell in
    assert data["policy"]["revision"] == harness.sidecar.store.current.revision
    assert data["policy"]["last_reload"]["result"] == "loaded"
    assert {s["id"]: s["mode"] for s in data["policy"]["steps"]} == {
        "competitors": "shadow",
        "secrets": "enforce",
    }
    rules = _rules(harness)
    assert rules["competitors/request_match"]["shadow"] == {"block": 2}
    assert rules["competitors/request_match"]["enforce"] == {}
    assert rules["secrets/request_match"]["enforce"] == {"redact": 1}


def test_live_page_is_self_contained(harness: SidecarHarness) -> None:
    r = httpx.get(f"{harness.base_url}/admin/live")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "live.json" in r.text
    assert "src=" not in r.text and "href=" not in r.text  # no external scripts, styles or fonts


def _browser() -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no chromium/chromedriver: apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("headless browser test: pip install selenium (in the dev extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def cell_text(browser: Any, selector: str) -> str:
    """The text of the first element ``selector`` finds, "" when there is none yet.

    The live page re-renders its tables on every poll, so an element found a moment ago may be
    gone when its text is read (a stale element): that is "not there yet" too, and the
    ``WebDriverWait`` around it looks again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        found = browser.find_elements(By.CSS_SELECTOR, selector)
        return str(found[0].text) if found else ""
    except StaleElementReferenceException:
        return ""


def test_live_page_in_a_browser_shows_a_shadow_rule(harness: SidecarHarness) -> None:
    browser = _browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    row = 'tr[data-rule="competitors/request_match"]'

    def cell(css: str) -> str:
        return cell_text(browser, f"{row} {css}")

    try:
        _chat(harness, "is globex hiring?")
        _chat(harness, "globex, again")
        browser.get(f"{harness.base_url}/admin/live?every=1")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda _: cell("td.shadow-block") == "2")
        assert cell("td.mode") == "shadow"
        assert cell("td.enforce-block") == "0"
        revision = browser.find_element(By.ID, "revision").text
        assert revision == harness.sidecar.store.current.revision
        _chat(harness, "globex a third time")  # the page polls: the count moves without a reload
        wait.until(lambda _: cell("td.shadow-block") == "3")
        assert cell("td.shadow-total") == "3"
    finally:
        browser.quit()
