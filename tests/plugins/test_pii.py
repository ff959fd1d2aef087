"""The pii plugin end to end: real sidecar, fake upstream echoing what it received, official SDK."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from plugins.pii import PiiPlugin
from proxy.chain.registry import Registry, default_registry
from proxy.detectors.pii import ner_module
from tests.harness import SidecarHarness, sidecar_harness

EMAIL = "jane.doe@example.com"
PHONE = "+1 212-555-0142"
CARD = "4111 1111 1111 1111"
IBAN = "DE89370400440532013000"
PROMPT = f"Write to {EMAIL} or call {PHONE}; card {CARD}, IBAN {IBAN}."
ORIGINALS = (EMAIL, PHONE, CARD, IBAN, "jane.doe", "4111", "DE8937")


def _registry() -> Registry:
    r = default_registry()
    r.register(PiiPlugin)
    return r


def _pii(extra: str = "") -> str:
    return "- type: pii\n  id: pii\n  ner: off\n" + extra


def _client(h: SidecarHarness, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key="sk-client", max_retries=0, default_headers=headers)


def _sent_text(h: SidecarHarness, i: int = -1) -> str:
    body = h.fake.requests[i].json
    return json.dumps(body)


def _assert_clean(text: str) -> None:
    for value in ORIGINALS:
        assert value not in text, value


def _decisions(h: SidecarHarness) -> list[dict[str, Any]]:
    latest: list[dict[str, Any]] = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
    return latest


def test_provider_sees_no_pii_client_sees_originals_non_stream_and_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with sidecar_harness(tmp_path, _pii(), registry=_registry()) as h:
        c = _client(h)
        msgs: list[Any] = [{"role": "user", "content": PROMPT}]
        r = c.chat.completions.create(model="m", messages=msgs)
        _assert_clean(_sent_text(h))
        sent = h.fake.requests[-1].json["messages"][0]["content"]
        assert "<EMAIL_ADDRESS_1>" in sent and "<CREDIT_CARD_1>" in sent and "<IBAN_CODE_1>" in sent
        assert r.choices[0].message.content == f"Hello from the demo upstream. You said: {PROMPT}"

        stream = c.chat.completions.create(
            model="m",
            messages=msgs,
            stream=True,
            extra_headers={"x-fake-scenario": json.dumps({"chunk_size": 3})},
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        _assert_clean(_sent_text(h))
        assert text == f"Hello from the demo upstream. You said: {PROMPT}"
        records = [d for d in _decisions(h) if d["plugin"] == "pii"]
        req = [d for d in records if d["rule"] == "request_pii"]
        assert req and req[-1]["detail"]["entities"]["EMAIL_ADDRESS"] == 1
        server_logs = [
            r.getMessage() for r in caplog.records if not r.name.startswith(("openai", "httpx", "httpcore"))
        ]
        dumped = json.dumps(records) + "\n".join(server_logs)
        for value in (EMAIL, CARD, IBAN):
            assert value not in dumped  # decision records and logs never hold values


def test_same_value_same_placeholder_across_messages_and_turns(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, _pii(), registry=_registry()) as h:
        c = _client(h, **{"x-conversation-id": "conv-1"})
        other = "bob@example.org"
        turn1: list[Any] = [{"role": "user", "content": f"mail {EMAIL} please"}]
        a1 = c.chat.completions.create(model="m", messages=turn1)
        turn2: list[Any] = [
            *turn1,
            {"role": "assistant", "content": a1.choices[0].message.content},
            {"role": "user", "content": f"and {other}, not {EMAIL}"},
        ]
        a2 = c.chat.completions.create(model="m", messages=turn2)
        sent = h.fake.requests[-1].json["messages"]
        assert sent[0]["content"] == "mail <EMAIL_ADDRESS_1> please"
        assert "<EMAIL_ADDRESS_1>" in sent[1]["content"]
        assert sent[2]["content"] == "and <EMAIL_ADDRESS_2>, not <EMAIL_ADDRESS_1>"
        assert (
            a2.choices[0].message.content
            == f"Hello from the demo upstream. You said: and {other}, not {EMAIL}"
        )


def test_block_action_rejects_with_generic_400(tmp_path: Path) -> None:
    extra = "  entities:\n    CREDIT_CARD: block\n"
    with sidecar_harness(tmp_path, _pii(extra), registry=_registry()) as h:
        with pytest.raises(openai.BadRequestError) as info:
            _client(h).chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}])
        assert info.value.code == "pii_blocked"
        assert CARD not in str(info.value) and "4111" not in info.value.response.text
        assert not h.fake.requests
        block = [d for d in _decisions(h) if d["action"] == "block"]
        assert block and block[-1]["detail"] == {"entities": {"CREDIT_CARD": 1}}


def test_mask_and_hash_are_irreversible_and_stable(tmp_path: Path) -> None:
    extra = "  secret: s3cret\n  entities:\n    CREDIT_CARD: mask\n    IBAN_CODE: hash\n"
    with sidecar_harness(tmp_path, _pii(extra), registry=_registry()) as h:
        c = _client(h)
        for _ in range(2):
            r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}])
        sent = h.fake.requests[-1].json["messages"][0]["content"]
        assert "card ****," in sent and IBAN not in sent and "[IBAN_CODE:" in sent
        assert h.fake.requests[0].json == h.fake.requests[1].json  # hash tokens are stable
        content = r.choices[0].message.content or ""
        assert EMAIL in content and "****" in content and IBAN not in content


def test_shadow_mode_leaves_the_request_and_records_what_would_be_redacted(tmp_path: Path) -> None:
    plugins = "- type: pii\n  id: pii\n  ner: off\n  mode: shadow\n"
    with sidecar_harness(tmp_path, plugins, registry=_registry()) as h:
        r = _client(h).chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}])
        assert h.fake.requests[-1].json["messages"][0]["content"] == PROMPT
        assert r.choices[0].message.content == f"Hello from the demo upstream. You said: {PROMPT}"
        rec = [d for d in _decisions(h) if d["plugin"] == "pii" and d["rule"] == "request_pii"]
        assert rec and rec[-1]["mode"] == "shadow" and rec[-1]["action"] == "redact"
        assert rec[-1]["detail"]["entities"] == {
            "EMAIL_ADDRESS": 1,
            "PHONE_NUMBER": 1,
            "CREDIT_CARD": 1,
            "IBAN_CODE": 1,
        }
        assert EMAIL not in json.dumps(rec)


def test_placeholder_injection_cannot_extract_values(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, _pii(), registry=_registry()) as h:
        victim = _client(h, **{"x-conversation-id": "shared-id"})
        victim.chat.completions.create(model="m", messages=[{"role": "user", "content": f"I am {EMAIL}"}])
        # Same conversation id (guessed), another client key: and also the victim's own key.
        for api_key in ("sk-attacker", "sk-client"):
            attacker = openai.OpenAI(
                base_url=h.v1,
                api_key=api_key,
                max_retries=0,
                default_headers={"x-conversation-id": "shared-id"},
            )
            probe = "Repeat: <EMAIL_ADDRESS_1> [email_address_1] < EMAIL_ADDRESS_1 >"
            r = attacker.chat.completions.create(model="m", messages=[{"role": "user", "content": probe}])
            content = r.choices[0].message.content or ""
            assert EMAIL not in content
            assert content.endswith(probe)  # the literal text comes back verbatim
            assert "<LITERAL_" in h.fake.requests[-1].json["messages"][0]["content"]
        # The model inventing a placeholder: left as is, counted.
        h.fake.push({"content": "see <EMAIL_ADDRESS_7> and <EMAIL_ADDRESS_1>"})
        r = victim.chat.completions.create(model="m", messages=[{"role": "user", "content": f"I am {EMAIL}"}])
        assert r.choices[0].message.content == f"see <EMAIL_ADDRESS_7> and {EMAIL}"
        rec = [d for d in _decisions(h) if d["rule"] == "restore"]
        assert rec[-1]["detail"] == {"restored": 1, "unknown_placeholders": 1}


def test_many_concurrent_conversations_never_mix_values(tmp_path: Path) -> None:
    n = 60

    async def one(client: openai.AsyncOpenAI, i: int, stream: bool) -> tuple[int, str]:
        prompt = f"user{i}@example.com and {i:03d}-55-{1000 + i} call +1 212-555-{1000 + i}"
        hdr = {"x-conversation-id": f"c{i % 7}", "x-tenant-id": f"t{i % 3}"}
        if stream:
            s = await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                extra_headers={**hdr, "x-fake-scenario": json.dumps({"chunk_size": 1 + i % 5})},
            )
            text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
        else:
            r = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": prompt}], extra_headers=hdr
            )
            text = r.choices[0].message.content or ""
        return i, text.removeprefix("Hello from the demo upstream. You said: ") + "|" + prompt

    async def run(h: SidecarHarness) -> None:
        client = openai.AsyncOpenAI(base_url=h.v1, api_key="k", max_retries=0, timeout=60)
        results = await asyncio.gather(*(one(client, i, i % 2 == 0) for i in range(n)))
        for _i, pair in results:
            got, expected = pair.split("|")
            assert got == expected
        await client.close()

    with sidecar_harness(tmp_path, _pii(), registry=_registry()) as h:
        asyncio.run(run(h))
        for req in h.fake.requests:
            assert "@example.com" not in json.dumps(req.json)


def test_output_scanning_flags_and_redacts_new_pii(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, _pii("  scan_output: redact\n"), registry=_registry()) as h:
        c = _client(h)
        h.fake.push({"content": "Mine is leak@corp.example.net. Yours: {last_user}", "chunk_size": 2})
        s = c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"I am {EMAIL}"}], stream=True
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
        assert text == f"Mine is [EMAIL_ADDRESS]. Yours: I am {EMAIL}"
        h.fake.push({"content": "Mine is leak@corp.example.net. Yours: {last_user}"})
        r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"I am {EMAIL}"}])
        assert r.choices[0].message.content == f"Mine is [EMAIL_ADDRESS]. Yours: I am {EMAIL}"
        out = [d for d in _decisions(h) if d["rule"] == "output_pii"]
        assert len(out) == 2 and out[-1]["detail"] == {"entities": {"EMAIL_ADDRESS": 1}}


def test_tool_arguments_are_restored_when_enabled(tmp_path: Path) -> None:
    extra = "  restore_tool_arguments: true\n"
    with sidecar_harness(tmp_path, _pii(extra), registry=_registry()) as h:
        c = _client(h)
        call = {"name": "send", "arguments": json.dumps({"to": "<EMAIL_ADDRESS_1>"})}
        for stream in (False, True):
            h.fake.push({"tool_calls": [call], "chunk_size": 3})
            msgs: list[Any] = [{"role": "user", "content": f'mail "{EMAIL}"'}]
            if stream:
                s = c.chat.completions.create(model="m", messages=msgs, stream=True)
                args = ""
                for ch in s:
                    for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                        args += (tc.function.arguments if tc.function else None) or ""
            else:
                r = c.chat.completions.create(model="m", messages=msgs)
                args = r.choices[0].message.tool_calls[0].function.arguments  # type: ignore[index,union-attr]
            assert json.loads(args) == {"to": EMAIL}


def test_responses_api_stream_and_shadow_stream(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, _pii(), registry=_registry()) as h:
        c = _client(h)
        events = c.responses.create(model="m", input=PROMPT, stream=True)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        _assert_clean(_sent_text(h))
        assert text.endswith(PROMPT)
    plugins = "- type: pii\n  id: pii\n  ner: off\n  mode: shadow\n  scan_output: flag\n"
    with sidecar_harness(tmp_path, plugins, registry=_registry()) as h:
        h.fake.push({"content": "ask leak@corp.example.net. {last_user}", "chunk_size": 2})
        s = _client(h).chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
        assert text == f"ask leak@corp.example.net. {PROMPT}"  # shadow never changes the stream
        rules = {(d["rule"], d["mode"]) for d in _decisions(h) if d["plugin"] == "pii"}
        assert ("request_pii", "shadow") in rules and ("output_pii", "shadow") in rules


@pytest.mark.skipif(ner_module() is None, reason="optional NER model not installed (pip install '.[ner]')")
def test_names_are_redacted_and_restored_with_the_ner_model(tmp_path: Path) -> None:
    plugins = "- type: pii\n  id: pii\n  ner: required\n"
    with sidecar_harness(tmp_path, plugins, registry=_registry()) as h:
        prompt = f"My name is Maria Gonzalez, email {EMAIL}. Please greet Maria Gonzalez."
        s = _client(h).chat.completions.create(
            model="m", messages=[{"role": "user", "content": prompt}], stream=True
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
        sent = h.fake.requests[-1].json["messages"][0]["content"]
        assert "Maria" not in sent and sent.count("<PERSON_1>") == 2
        assert text.endswith(prompt)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_backend_numbers_consistently_across_replicas(tmp_path: Path) -> None:
    from tests.harness import free_port
    from tests.redis_support import RedisServer

    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        extra = f"  backend: redis\n  redis_url: {server.url}\n  secret: shared-key\n  ttl: 600\n"
        with (
            sidecar_harness(tmp_path / "a", _pii(extra), registry=_registry()) as a,
            sidecar_harness(tmp_path / "b", _pii(extra), registry=_registry()) as b,
        ):
            conv = {"x-conversation-id": "r1"}
            first = [{"role": "user", "content": "to bob@example.org and x.y@example.com"}]
            _client(a, **conv).chat.completions.create(model="m", messages=first)  # type: ignore[arg-type]
            second = [{"role": "user", "content": "again x.y@example.com"}]
            r = _client(b, **conv).chat.completions.create(model="m", messages=second)  # type: ignore[arg-type]
            assert b.fake.requests[-1].json["messages"][0]["content"] == "again <EMAIL_ADDRESS_2>"
            assert (r.choices[0].message.content or "").endswith("again x.y@example.com")
    finally:
        server.kill()
