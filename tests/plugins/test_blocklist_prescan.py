"""blocklist: the one-pass pre-scan only skips texts that cannot match (issue 17).

``BlocklistPlugin.may_match`` is False only when Hyperscan proved the text holds no match of the
compiled alternation; the search / substitution then does not run. These tests check that it
never hides a match (generated texts, keywords and patterns, either case setting), that clean
texts do take the fast path, and that regex-module syntax PCRE would read differently (fuzzy
matching) stays outside the pre-scan.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.blocklist import BlocklistConfig, BlocklistPlugin
from proxy.chain.context import RequestContext
from proxy.chain.plugin import Deps, Resources
from proxy.detectors import multiscan
from proxy.models import ChatRequest, Route

PATTERNS = ("sk-[A-Za-z0-9_-]{20,}", "-----BEGIN [A-Z ]*PRIVATE KEY-----", r"\bpass(?:word)?\s*[:=]\s*\S+")
KEYWORDS = ("secret", "Project Falcon", "x-y")
TEXTS = st.lists(
    st.one_of(
        st.sampled_from(
            ["sk-", "a" * 20, "-----BEGIN ", "RSA PRIVATE KEY-----", "password", " = ", "hunter2"]
        ),
        st.sampled_from(["secret", "SECRET", "project falcon", "x-y", "X-Y", "\u00e9", "\x1c", "\n"]),
        st.text(alphabet="abksSP-_ =:\n", max_size=12),
    ),
    max_size=12,
).map("".join)


def _plugin(**config: Any) -> BlocklistPlugin:
    return BlocklistPlugin(BlocklistConfig(**config), Deps(Resources()))


PLUGINS = [
    _plugin(keywords=KEYWORDS, patterns=PATTERNS, action="redact"),
    _plugin(keywords=KEYWORDS, patterns=PATTERNS, action="redact", case_sensitive=True),
]


def test_the_fast_path_is_installed_and_used() -> None:
    assert multiscan.available(), "the hyperscan wheel is missing: pip install hyperscan"
    for plugin in PLUGINS:
        assert plugin._gate.keys == {"blocklist"}
        assert not plugin.may_match("an ordinary support ticket about a late parcel")
        assert plugin.may_match("my key is sk-" + "a" * 24)


@settings(max_examples=500, deadline=None)
@given(text=TEXTS)
def test_the_pre_scan_never_hides_a_match(text: str) -> None:
    for plugin in PLUGINS:
        if plugin._rx.search(text) is not None:
            assert plugin.may_match(text), text


def _request(text: str) -> ChatRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return ChatRequest(body, Route.CHAT, orjson.dumps(body))


@settings(max_examples=150, deadline=None)
@given(text=TEXTS)
async def test_redaction_is_the_same_with_and_without_the_pre_scan(text: str) -> None:
    plugin = PLUGINS[0]
    plain = _plugin(keywords=KEYWORDS, patterns=PATTERNS, action="redact")
    plain._gate = multiscan.Gate([])  # nothing admitted: every text is searched
    fast_req, plain_req = _request(text), _request(text)
    fast_ctx = RequestContext(request_id="a", route=Route.CHAT, headers={})
    plain_ctx = RequestContext(request_id="b", route=Route.CHAT, headers={})
    await plugin.on_request(fast_req, fast_ctx)
    await plain.on_request(plain_req, plain_ctx)
    assert fast_req.body == plain_req.body
    assert [(d.rule, d.detail) for d in fast_ctx.decisions] == [
        (d.rule, d.detail) for d in plain_ctx.decisions
    ]


@pytest.mark.parametrize("pattern", [r"(?:secret){e<=1}", r"[{]x"])
async def test_syntax_pcre_reads_differently_stays_outside(pattern: str) -> None:
    plugin = _plugin(patterns=(pattern,), action="redact")
    assert plugin._gate.keys == frozenset()  # not admitted: every text takes the regex
    req = _request("the sekret is {x")
    await plugin.on_request(req, RequestContext(request_id="c", route=Route.CHAT, headers={}))
    assert "[REDACTED]" in req.body["messages"][0]["content"]
