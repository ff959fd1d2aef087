"""The shared guard toolkit (``proxy.guards``, issue 24.4) and the rules it lets every guard keep.

* ``AwaitedWindow`` in ``TextStreamFilter``: however a stream is chunked, the client sees the same
  text and the check sees every character once (property tests, sync and async buffers alike);
* the PII stream (restore, then scan, on the one filter) is chunking-independent too;
* ``RemoteModel``: YES / NO / garbage / transport failure / timeout through a fake HTTP port;
* ``Deps.json_http``: the port is a shared resource, and missing it is a clear error;
* ``add_flag``; and source scans: no built-in plugin reads ``ctx.shadow``, writes the flags header
  by hand, or parses ``delta.role`` itself.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.pii import PiiConfig, PiiPlugin
from proxy.chain import Deps, RequestContext, TextStreamFilter, sentence_boundary
from proxy.chain.plugin import Resources
from proxy.errors import Rejected
from proxy.guards import AwaitedWindow, RemoteModel, add_flag
from proxy.models import ChatRequest, Finish, Route, StreamEvent, TextDelta

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

TEXT = st.text(alphabet="ab .!?\n<>_X", max_size=120)


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


async def _run(flt: Any, chunks: Sequence[str]) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    for chunk in chunks:
        out += await flt.on_event(TextDelta(0, chunk))
    out += await flt.on_event(Finish(0, "stop"))
    out += await flt.on_end()
    return out


def _text(events: Sequence[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@settings(max_examples=150, deadline=None)
@given(text=TEXT, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8), hold=st.booleans())
def test_awaited_windows_are_chunking_independent(text: str, cuts: list[int], hold: bool) -> None:
    seen: list[str] = []

    async def settle(window: str) -> str:
        await asyncio.sleep(0)  # really async: the filter must await it
        seen.append(window)
        return window.upper()

    flt = TextStreamFilter(lambda: AwaitedWindow(sentence_boundary(16), settle, hold))
    events = asyncio.run(_run(flt, _split(text, cuts)))
    assert "".join(seen) == text  # every character checked exactly once
    assert _text(events) == (text.upper() if hold else text)  # after_release: text passes as sent
    assert isinstance(events[-1], Finish)  # the finish follows its choice's held text


async def test_a_held_window_never_reaches_the_client_when_its_check_raises() -> None:
    async def settle(window: str) -> str:
        if "bad" in window:
            raise Rejected("no", code="output_flagged")
        return window

    flt = TextStreamFilter(lambda: AwaitedWindow(sentence_boundary(400), settle))
    sent = list(await flt.on_event(TextDelta(0, "Fine. This is b", {"delta": {"role": "assistant"}})))
    assert _text(sent) == "Fine."
    with pytest.raises(Rejected):
        await flt.on_event(TextDelta(0, "ad. More."))
    # A delta whose text is all held still carries its role, on its own.
    fresh = TextStreamFilter(lambda: AwaitedWindow(sentence_boundary(400), settle))
    held = await fresh.on_event(TextDelta(1, "no end yet", {"delta": {"role": "assistant"}}))
    assert held == [TextDelta(1, "", {"delta": {"role": "assistant"}}, None)]


EMAIL = "jane.doe@example.com"
ANSWER = "Mail <EMAIL_ADDRESS_1> now. Or write to leak@corp.example.net today. Bye"


def _pii_stream(chunks: Sequence[str]) -> str:
    async def go() -> str:
        plugin = PiiPlugin(PiiConfig(ner="off", scan_output="redact"), Deps(Resources()))
        ctx = RequestContext("r", Route.CHAT, {})
        body = {"model": "m", "messages": [{"role": "user", "content": f"I am {EMAIL}."}]}
        await plugin.on_request(ChatRequest(body, Route.CHAT), ctx)
        flt = plugin.open_stream(ctx)
        assert flt is not None
        return _text(await _run(flt, chunks))

    return asyncio.run(go())


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=10))
def test_pii_restore_then_scan_is_chunking_independent(cuts: list[int]) -> None:
    expected = f"Mail {EMAIL} now. Or write to [EMAIL_ADDRESS] today. Bye"
    assert _pii_stream([ANSWER]) == expected
    assert _pii_stream(_split(ANSWER, cuts)) == expected


class _FakeHttp:
    def __init__(self, answer: Any = None, error: BaseException | None = None, delay: float = 0) -> None:
        self.answer, self.error, self.delay = answer, error, delay
        self.calls: list[tuple[str, list[tuple[str, str]], bytes]] = []

    async def post_json(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Any:
        self.calls.append((url, list(headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.answer

    async def aclose(self) -> None:
        return None


def _judge(http: _FakeHttp, timeout: float = 1.0) -> RemoteModel:
    from pydantic import SecretStr

    deps = Deps(Resources(), http=lambda _timeout: http)
    return RemoteModel(deps, "http://judge/v1/", SecretStr("k"), timeout, "judge_error")  # type: ignore[arg-type]


def _chat(content: str) -> dict[str, Any]:
    return {"choices": [{"message": {"content": content}}]}


@pytest.mark.parametrize(
    ("http", "verdict", "error"),
    [
        (_FakeHttp(_chat(" yes.")), True, None),
        (_FakeHttp(_chat("NO")), False, None),
        (_FakeHttp(_chat("maybe")), None, "unparseable answer"),
        (_FakeHttp({"error": {"message": "busy"}}), None, "unexpected body"),
        (_FakeHttp(error=ConnectionError("down")), None, "ConnectionError"),
        (_FakeHttp(_chat("YES"), delay=5), None, "TimeoutError"),
    ],
)
async def test_the_judge_client_answers_or_records_why_not(
    http: _FakeHttp, verdict: bool | None, error: str | None
) -> None:
    ctx = RequestContext("r", Route.CHAT, {})
    assert await _judge(http, timeout=0.05).ask_yes_no("jm", "is it?", ctx) is verdict
    url, headers, body = http.calls[0]
    assert url == "http://judge/v1/chat/completions"
    assert ("authorization", "Bearer k") in headers and b'"model":"jm"' in body
    errors = [d.detail for d in ctx.decisions if d.rule == "judge_error"]
    assert errors == ([] if error is None else [{"path": "/chat/completions", "error": error}])


def test_the_http_port_is_a_shared_resource_and_required() -> None:
    made: list[float] = []

    def factory(timeout: float) -> _FakeHttp:
        made.append(timeout)
        return _FakeHttp()

    resources = Resources()
    first, second = Deps(resources, http=factory), Deps(resources, http=factory)
    assert first.json_http("http://a", 2.0) is second.json_http("http://a", 2.0)
    assert first.json_http("http://b", 2.0) is not first.json_http("http://a", 2.0)
    assert made == [2.0, 2.0]
    with pytest.raises(RuntimeError, match="no HTTP port"):
        Deps(Resources()).json_http("http://a", 1.0)


def test_add_flag_merges_once_in_order() -> None:
    ctx = RequestContext("r", Route.CHAT, {})
    for name in ("injection", "schema", "injection", "moderation"):
        add_flag(ctx, name)
    assert ctx.response_headers["x-sidecar-flags"] == "injection,schema,moderation"


def _plugin_sources() -> list[Path]:
    sources = sorted(PLUGINS.rglob("*.py"))
    assert len(sources) > 15  # the packages (pii/, schema/ ...) are scanned too
    return sources


def test_no_builtin_plugin_reads_ctx_shadow() -> None:
    """Shadow mode is the chain's job (its effects buffer); a plugin that branches on it is a bug."""
    readers = [
        f"{path.relative_to(PLUGINS)}:{node.lineno}"
        for path in _plugin_sources()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "shadow"
    ]
    assert readers == []


def test_no_builtin_plugin_rewrites_the_shared_guard_parts() -> None:
    """The flags header and the ``delta.role`` rule exist once (``proxy.guards`` / the text filter)."""
    offenders = []
    for path in _plugin_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in ("x-sidecar-flags", "delta"):
                offenders.append(f"{path.relative_to(PLUGINS)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("proxy.upstream.client"):
                offenders.append(f"{path.relative_to(PLUGINS)}:{node.lineno}: imports the HTTP client")
    assert offenders == []
