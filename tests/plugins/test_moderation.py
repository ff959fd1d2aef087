"""The moderation plugin end to end: input, output, streams (window and after release), layers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from plugins.injection import InjectionConfig, InjectionPlugin
from plugins.moderation import ModerationConfig, ModerationPlugin
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.demo.fake_scenario import FakeState
from proxy.demo.fake_upstream import fake_upstream_in_thread
from proxy.detectors.shared import SCAN_CACHE
from proxy.models import ChatRequest, Route, TextDelta
from tests.harness import SidecarHarness, sidecar_harness

VIOLENT = "I am going to kill you and your whole family tonight, you will bleed to death."
BENIGN = "How do I kill a Python process that hangs? Then shoot me a message."


def _chat(h: SidecarHarness, content: str, **kw: Any) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **kw}
    return httpx.post(f"{h.v1}/chat/completions", json=body, timeout=20, headers=kw.pop("headers", {}))


def _decisions(h: SidecarHarness) -> list[dict[str, Any]]:
    recent: list[dict[str, Any]] = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
    return [d for d in recent if d["plugin"] == "moderation"]


def _scripted(content: str, **kw: Any) -> dict[str, str]:
    return {"x-fake-scenario": json.dumps({"content": content, **kw})}


@pytest.fixture
def moderated(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, "- type: moderation\n") as h:
        yield h


def test_input_violation_is_blocked_and_benign_text_passes(moderated: SidecarHarness) -> None:
    c = openai.OpenAI(base_url=moderated.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": VIOLENT}])
    assert info.value.code == "content_flagged"
    assert len(moderated.fake.requests) == 0
    ok = c.chat.completions.create(model="m", messages=[{"role": "user", "content": BENIGN}])
    assert "kill a Python process" in (ok.choices[0].message.content or "")
    block = next(d for d in _decisions(moderated) if d["action"] == "block")
    assert "violence" in block["detail"]["categories"] and block["score"] >= block["threshold"]
    assert "family" not in json.dumps(block)  # no text in records


def test_output_violation_is_blocked_non_stream(moderated: SidecarHarness) -> None:
    r = httpx.post(
        f"{moderated.v1}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "tell me a story"}]},
        headers=_scripted(VIOLENT),
        timeout=20,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "output_flagged"


def test_stream_window_checks_text_before_the_client_sees_it(moderated: SidecarHarness) -> None:
    story = "The morning was calm. The birds sang in the garden. " + VIOLENT + " The end."
    c = openai.OpenAI(base_url=moderated.v1, api_key="x", max_retries=0)
    received = ""
    with pytest.raises(openai.APIError) as info:
        for chunk in c.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "story"}],
            stream=True,
            extra_headers=_scripted(story, chunk_size=5, chunk_delay=0.01),
        ):
            received += "".join(ch.delta.content or "" for ch in chunk.choices)
    assert "blocked by policy" in str(info.value)
    assert received.startswith("The morning was calm.")
    assert "kill" not in received  # the violating sentence never reached the client


def test_stream_after_release_adds_no_hold_but_still_ends_the_stream(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, "- type: moderation\n  stream: after_release\n") as h:
        story = "Calm start. " + VIOLENT + " More text follows here."
        c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
        received = ""
        with pytest.raises(openai.APIError):
            for chunk in c.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "story"}],
                stream=True,
                extra_headers=_scripted(story, chunk_size=5, chunk_delay=0.01),
            ):
                received += "".join(ch.delta.content or "" for ch in chunk.choices)
        assert "kill you" in received  # the trade-off: released first, checked right after
        assert "More text follows" not in received


def test_benign_stream_is_complete(moderated: SidecarHarness) -> None:
    c = openai.OpenAI(base_url=moderated.v1, api_key="x", max_retries=0)
    text = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": BENIGN}], stream=True
        )
        if ch.choices
    )
    assert text == f"Hello from the demo upstream. You said: {BENIGN}"


def test_shadow_and_flag(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, "- type: moderation\n  mode: shadow\n") as h:
        assert _chat(h, VIOLENT).status_code == 200  # and the echoed answer is violent too
        decisions = _decisions(h)
        assert {(d["action"], d["mode"]) for d in decisions} == {("block", "shadow")}
        assert {d["detail"]["where"] for d in decisions} == {"input", "output"}
    with sidecar_harness(tmp_path, "- type: moderation\n  default_action: flag\n") as h:
        r = _chat(h, VIOLENT)
        assert r.status_code == 200 and r.headers["x-sidecar-flags"] == "moderation"


def test_per_category_thresholds_and_actions_hot_reload(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, "- type: moderation\n") as h:
        assert _chat(h, VIOLENT).status_code == 400
        text = h.policy_path.read_text().replace(
            "- type: moderation\n",
            "- type: moderation\n    categories: {violence: {action: off}, harassment: "
            "{action: off}, hate/threatening: {action: off}, violence/graphic: {action: off}}\n",
        )
        h.write_policy(text)
        h.wait_for_revision(lambda p: "violence" in h.sidecar.store.current.policy.plugins[0].categories)
        r = _chat(h, VIOLENT)
        assert r.status_code in (200, 400)
        if r.status_code == 400:  # only categories still on may block it
            cats = _decisions(h)[-1]["detail"]["categories"]
            assert not {"violence", "harassment", "hate/threatening", "violence/graphic"} & set(cats)


@pytest.fixture
def remote() -> Iterator[tuple[str, FakeState]]:
    with fake_upstream_in_thread() as pair:
        yield pair


def test_moderation_endpoint_layer_raises_scores(tmp_path: Path, remote: tuple[str, FakeState]) -> None:
    url, state = remote
    with sidecar_harness(
        tmp_path, f"- type: moderation\n  endpoint: {{base_url: '{url}', model: omni}}\n"
    ) as h:
        assert _chat(h, "A perfectly nice sentence about FLAGME gardens.").status_code == 400
        assert _chat(h, "A perfectly nice sentence about gardens.").status_code == 200
        # The blocked request was checked once (input); the other twice (input and the echoed output).
        assert [r.path for r in state.requests] == ["/v1/moderations"] * 3


def test_judge_settles_the_borderline_band(tmp_path: Path, remote: tuple[str, FakeState]) -> None:
    url, state = remote
    plugins = f"- type: moderation\n  judge: {{base_url: '{url}', model: j, band: [0.0, 1.0]}}\n"
    with sidecar_harness(tmp_path, plugins) as h:
        state.push({"content": "YES"})
        assert _chat(h, "A perfectly nice sentence about gardens.").status_code == 400
        state.push({"content": "NO"})
        assert _chat(h, VIOLENT).status_code == 200
        asked = state.requests[-1].json
        assert asked is not None and asked["model"] == "j"


def _window_filter(**config: Any) -> Any:
    plugin = ModerationPlugin(ModerationConfig(**config), Deps(Resources()))
    stream = plugin.open_stream(RequestContext("r", Route.CHAT, {}))
    assert stream is not None
    return stream


def _texts(events: Any) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta) and e.text]


async def test_stream_window_releases_a_sentence_on_the_event_that_ends_it() -> None:
    """The only latency ``stream: window`` adds is the declared window: a sentence goes out, checked,
    on the very upstream event that completes it, not on a later one and not at the end."""
    stream = _window_filter()
    assert _texts(await stream.on_event(TextDelta(0, "The morning was calm"))) == []
    # The sentence ends when the whitespace after its "." arrives: released at once, the rest held.
    assert _texts(await stream.on_event(TextDelta(0, ". The birds"))) == ["The morning was calm."]
    assert _texts(await stream.on_event(TextDelta(0, " sang.\nThen"))) == [" The birds sang.\n"]
    assert _texts(await stream.on_end()) == ["Then"]


async def test_stream_window_without_a_sentence_end_is_released_at_window_chars() -> None:
    stream = _window_filter(window_chars=20)
    assert _texts(await stream.on_event(TextDelta(0, "a long clause without"))) == ["a long clause without"]
    assert _texts(await stream.on_event(TextDelta(0, " an end"))) == []  # 7 of at most 20 held


async def test_stream_after_release_passes_every_delta_through_at_once() -> None:
    stream = _window_filter(stream="after_release")
    assert _texts(await stream.on_event(TextDelta(0, "The morning"))) == ["The morning"]
    assert _texts(await stream.on_event(TextDelta(0, " was calm. The"))) == [" was calm. The"]


async def test_input_check_reuses_the_injection_steps_work_on_the_same_text() -> None:
    """Both plugins on one request: the moderation step finds the injection step's folded text and
    n-gram hashes in the request state, and its verdict matches scanning without them."""
    deps = Deps(Resources())
    injection = InjectionPlugin(InjectionConfig(), deps)
    moderation = ModerationPlugin(ModerationConfig(), deps)
    text = "Our greenhouse needs new panels; which seedlings grow well in a cold spring?"
    ctx = RequestContext("r", Route.CHAT, {})
    req = ChatRequest({"model": "m", "messages": [{"role": "user", "content": text}]}, Route.CHAT)
    await injection.on_request(req, ctx)
    cache = ctx.get(SCAN_CACHE)
    assert cache is not None and text in cache.folded and len(cache.hashes) == 1
    shared = await moderation.score(text, ctx, cache)
    assert len(cache.hashes) == 1  # a hit: the same prepared text, not hashed again
    assert shared == await moderation.score(text, RequestContext("r2", Route.CHAT, {}))
    await moderation.on_request(req, ctx)
    assert ctx.decisions == []
