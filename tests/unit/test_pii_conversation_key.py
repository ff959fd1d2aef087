"""The conversation key and the request's decision record, pinned to their definitions.

Redis vault numbering depends on the conversation key across releases, so its cheaper path
(the first user text handed over by ``on_request``, the JSON blob built without the encoder's
set-up) must give exactly ``HMAC-SHA256(secret, json.dumps([tenant, who, conv]))`` as before;
and the plain-dict counts must be what ``dict(Counter(...))`` gave.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from plugins.pii import PiiConfig, PiiPlugin
from plugins.pii.plugin import _counts
from plugins.pii.vault import conversation_key, json_string_list
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.detectors.pii import Span
from proxy.models import ChatRequest, Route

_SECRET = b"s" * 32


def _reference_key(config: PiiConfig, secret: bytes, req: ChatRequest, ctx: RequestContext) -> str:
    """The key's definition, as the plugin computed it before (``json.dumps``, a fresh walk)."""
    conv = ctx.headers.get(config.conversation_header)
    if not conv:
        first = next((s.text for s in req.text_slots() if s.role == "user"), "")
        conv = "first:" + hashlib.sha256(first.encode()).hexdigest()
    who = ""
    if config.bind_to_api_key:
        h = ctx.headers
        raw = h.get("authorization") or h.get("api-key") or h.get("x-api-key")
        who = hashlib.sha256((raw or "").encode()).hexdigest()
    blob = json.dumps([ctx.tenant or "", who, conv])
    return hmac.new(secret, blob.encode(), hashlib.sha256).hexdigest()


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(), max_size=4))
def test_the_blob_is_json_dumps(items: list[str]) -> None:
    assert json_string_list(items) == json.dumps(items)


_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
_ROLES = st.sampled_from(["system", "user", "assistant", "developer"])


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(st.tuples(_ROLES, _TEXT), max_size=4),
    headers=st.dictionaries(
        st.sampled_from(["x-conversation-id", "authorization", "api-key", "x-api-key"]), _TEXT
    ),
    tenant=st.one_of(st.none(), _TEXT),
    bind=st.booleans(),
)
def test_the_key_is_its_definition_with_and_without_the_handed_over_text(
    messages: list[tuple[str, str]], headers: dict[str, str], tenant: str | None, bind: bool
) -> None:
    config = PiiConfig(ner="off", bind_to_api_key=bind)
    body = {"model": "m", "messages": [{"role": r, "content": t} for r, t in messages]}
    req = ChatRequest(body, Route.CHAT)
    ctx = RequestContext("r", Route.CHAT, headers)
    ctx.tenant = tenant
    expected = _reference_key(config, _SECRET, req, ctx)
    first = next((t for r, t in messages if r == "user"), "")
    assert conversation_key(config, _SECRET, req, ctx) == expected
    assert conversation_key(config, _SECRET, req, ctx, first) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["EMAIL_ADDRESS", "PERSON", "PHONE_NUMBER", "LITERAL"]), max_size=12))
def test_counts_are_what_counter_gave(types: list[str]) -> None:
    spans = [Span(i, i + 1, t, 1.0) for i, t in enumerate(types)]
    counts = _counts(spans)
    assert counts == dict(Counter(types))
    assert list(counts) == list(dict(Counter(types)))  # the same key order in the record


@pytest.fixture(scope="module")
def plugin() -> PiiPlugin:
    return PiiPlugin(PiiConfig(ner="off", secret=SecretStr("k" * 32)), Deps(Resources()))


def test_on_request_numbers_values_under_the_defined_key(plugin: PiiPlugin) -> None:
    """No conversation header: the vault is asked under the key of the first user text (the
    system prompt before it and later user turns do not count), and the record is unchanged."""
    body: dict[str, Any] = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Write to help@corp.example.com."},
            {"role": "user", "content": "I am ann.lee@example.com, call +1 212-555-0142"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "and bob@example.org"},
        ],
    }
    req = ChatRequest(json.loads(json.dumps(body)), Route.CHAT)
    ctx = RequestContext("r", Route.CHAT, {"authorization": "Bearer a"})
    expected = _reference_key(plugin.config, plugin._secret, ChatRequest(body, Route.CHAT), ctx)
    asked: list[str] = []
    assign = plugin.vault.assign

    async def spy(conversation: str, items: Any) -> list[int]:
        asked.append(conversation)
        return await assign(conversation, items)

    plugin.vault.assign = spy  # type: ignore[method-assign]
    try:
        asyncio.run(plugin.on_request(req, ctx))
    finally:
        plugin.vault.assign = assign  # type: ignore[method-assign]
    assert asked == [expected]
    (record,) = ctx.decisions
    assert (record.rule, record.action) == ("request_pii", "redact")
    assert record.detail == {
        "entities": {"EMAIL_ADDRESS": 3, "PHONE_NUMBER": 1},
        "actions": {"redact": 4},
    }
    assert req.body["messages"][1]["content"] == "I am <EMAIL_ADDRESS_2>, call <PHONE_NUMBER_1>"
