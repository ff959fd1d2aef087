"""Staged promotion on a running sidecar: the official SDK, a real server, an injected clock.

Shadow → 50% → rollback by injected false positives, with the stage kept across a reload, the
log line / record / metric / live page of every move, and the state kept across a restart in
Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.chain.chain import canary_bucket
from proxy.chain.context import RequestContext
from proxy.models import Route
from tests.harness import SidecarHarness, free_port, sidecar_harness
from tests.redis_support import REDIS, RedisServer

WORDS = """
- type: blocklist
  id: words
  mode: shadow
  keywords: [forbidden]
  scan_response: false
  promote: {steps: [50, 100], min_minutes: 10, min_requests: 20, max_block_rate: 0.25%s}
"""


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _ids(inside: bool, percent: float, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        rid = f"promo-{i}"
        if (canary_bucket(RequestContext(rid, Route.CHAT, {})) < percent) == inside:
            out.append(rid)
        i += 1
    return out


def _client(h: SidecarHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key="sk-test", max_retries=0, timeout=20)


def _ask(client: openai.OpenAI, text: str, rid: str) -> int:
    """The status the SDK saw: 200, or the status of the error it raised."""
    try:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": text}],
            extra_headers={"x-request-id": rid},
        )
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def _promotion(h: SidecarHarness) -> dict[str, Any]:
    info = httpx.get(f"{h.base_url}/admin/policy").json()
    [step] = [s for s in info["plugins"] if s["id"] == "words"]
    promote: dict[str, Any] = step["promote"]
    return promote


def _with_clock(h: SidecarHarness) -> Clock:
    clock = Clock()
    h.sidecar.store.promotions.clock = clock
    return clock


def _promote_to_50(h: SidecarHarness, clock: Clock) -> None:
    client = _client(h)
    assert [_ask(client, "hello", f"clean-{i}") for i in range(20)] == [200] * 20
    assert _promotion(h)["percent"] == 0  # enough requests, but not min_minutes yet
    clock.now += 10 * 60
    assert _ask(client, "hello", "tick") == 200
    assert _promotion(h)["percent"] == 50


def test_promotes_keeps_its_stage_across_a_reload_and_rolls_back_on_false_positives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="policy_sidecar.promotion")
    with sidecar_harness(tmp_path, WORDS % "") as h:
        clock = _with_clock(h)
        client = _client(h)
        inside, outside = _ids(True, 50, 3), _ids(False, 50, 3)
        # Shadow: the rule only records "would have" decisions.
        assert [_ask(client, "a forbidden word", rid) for rid in inside] == [200] * 3
        _promote_to_50(h, clock)
        assert "promotion moved words to 50% (canary)" in caplog.text
        # 50% canary: requests in the canary share are refused, the others are not.
        assert [_ask(client, "a forbidden word", rid) for rid in inside] == [400] * 3
        assert [_ask(client, "a forbidden word", rid) for rid in outside] == [200] * 3

        # A reload that does not touch the step keeps its stage.
        revision = httpx.get(f"{h.base_url}/admin/policy").json()["revision"]
        h.write_policy(h.policy_path.read_text().replace("plugins:\n", "plugins:\n  - type: headers\n", 1))
        h.wait_for_revision(lambda info: info["revision"] != revision)
        assert _promotion(h)["percent"] == 50
        assert _ask(client, "a forbidden word", inside[0]) == 400

        # Injected false positives: benign requests that mention the word, 30% of the traffic.
        statuses = [_ask(client, "forbidden" if i % 3 == 0 else "fine", f"fp-{i}") for i in range(30)]
        assert 400 in statuses
        promotion = _promotion(h)
        assert promotion["status"] == "rolled_back" and promotion["percent"] == 0
        assert [_ask(client, "a forbidden word", rid) for rid in inside] == [200] * 3  # shadow again

        # Every move is a log line, a decision record, a metric and on the live page.
        assert "promotion rolled back words to shadow: block rate" in caplog.text
        records = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
        kinds = [r["rule"] for r in records if r["plugin"] == "words" and r["rule"].startswith("promotion_")]
        assert kinds == ["promotion_promote", "promotion_rollback"]
        metrics = httpx.get(f"{h.base_url}/metrics").text
        assert 'sidecar_promotion_transitions_total{kind="rollback",plugin="words"} 1.0' in metrics
        assert 'sidecar_promotion_percent{plugin="words",status="rolled_back"} 0.0' in metrics
        live = httpx.get(f"{h.base_url}/admin/live.json").json()["policy"]
        assert [p["status"] for p in live["promotions"]] == ["rolled_back"]
        assert [t["kind"] for t in live["promotion_history"]] == ["promote", "rollback"]


class Labels:
    def __init__(self) -> None:
        self.counts = (0, 0)

    def labelled_hits(self, step_id: str, since: float) -> tuple[int, int]:
        return self.counts


def test_labelled_false_positives_roll_back(tmp_path: Path) -> None:
    extra = ", max_false_positive_rate: 0.1, min_labels: 5"
    with sidecar_harness(tmp_path, WORDS % extra) as h:
        clock = _with_clock(h)
        labels = h.sidecar.store.promotions.labels = Labels()
        _promote_to_50(h, clock)
        client = _client(h)
        assert _ask(client, "hello", "x1") == 200 and _promotion(h)["percent"] == 50
        labels.counts = (2, 5)  # reviewers marked 2 of the rule's 5 labelled hits benign
        clock.now += 60  # labels are read at most every 30 s
        assert _ask(client, "hello", "x2") == 200
        assert _promotion(h)["status"] == "rolled_back"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_state_survives_a_restart_with_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    extra = f"promotion: {{state: redis, redis_url: '{redis_server.url}'}}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with sidecar_harness(tmp_path / "a", WORDS % "", extra) as h:
        _promote_to_50(h, _with_clock(h))
    # A new sidecar (a restart: a fresh process-wide promotion book) on the same policy.
    with sidecar_harness(tmp_path / "b", WORDS % "", extra) as h:
        assert _promotion(h)["percent"] == 50
        assert _ask(_client(h), "a forbidden word", _ids(True, 50, 1)[0]) == 400


def test_the_live_page_shows_the_promotion_in_a_browser(tmp_path: Path) -> None:
    from tests.e2e.test_live_page import _browser, cell_text

    with sidecar_harness(tmp_path, WORDS % "") as h:
        browser = _browser()
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def cell(css: str) -> str:
            return cell_text(browser, f'#promotions tr[data-step="words"] {css}')

        try:
            browser.get(f"{h.base_url}/admin/live?every=1")
            wait = WebDriverWait(browser, 20)
            wait.until(lambda _: cell("td.status") == "shadow")
            assert cell("td.percent") == "0%"
            _promote_to_50(h, _with_clock(h))
            wait.until(lambda _: cell("td.status") == "canary")  # the page polls: no reload needed
            assert cell("td.percent") == "50%"
            history = browser.find_elements(By.CSS_SELECTOR, "#promotion-history li.promote")
            assert len(history) == 1 and "words: promote 0% → 50%" in history[0].text
            assert not browser.find_element(By.ID, "no-promotions").is_displayed()
        finally:
            browser.quit()
