"""PII defaults that fit everyday text (issue 22 item 3).

The default entity set (``proxy/detectors/pii/defaults.py``) redacts contact data, person
names, government and financial IDs and credentials, and leaves places, dates, versions and
organisations alone; names with apostrophes and hyphens are found without a model.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import openai
import pytest

from plugins.pii import PiiConfig, PiiPlugin
from proxy.chain import Deps
from proxy.chain.plugin import Resources
from proxy.detectors.pii import DEFAULT_ENTITIES
from tests.harness import sidecar_harness


@functools.cache
def _plugin(**config: object) -> PiiPlugin:
    return PiiPlugin(PiiConfig(ner="off", **config), Deps(Resources(), cpu_workers=1))  # type: ignore[arg-type]


def _found(text: str, **config: object) -> set[tuple[str, str]]:
    plugin = _plugin(**config)
    return {(text[s.start : s.end], s.entity_type) for s in plugin._spans(text, False)}


@pytest.mark.parametrize(
    "text",
    [
        "What's the capital of France?",
        "Is Paris bigger than Berlin?",
        "The meeting is on 12/03/2024 at 10am.",
        "It was founded in 1977, on 12 March.",
        "The release is due on 12 March 2024.",
        "We shipped release 4.2.0.1 yesterday.",
        "Please upgrade to version 10.0.0.1 first.",
        "Fixed in v2.10.3.4 and build 1.2.3.4.",
        "Acme Inc is a company based in Ohio.",
        "I am a Polish engineer.",
    ],
)
def test_everyday_text_is_left_alone_by_default(text: str) -> None:
    assert _found(text) == set()


@pytest.mark.parametrize(
    ("text", "value", "entity"),
    [
        ("Contact Sean O'Brien about it", "Sean O'Brien", "PERSON"),
        ("Ask Mary O'Brien", "Mary O'Brien", "PERSON"),
        ("Jean-Luc Picard called twice", "Jean-Luc Picard", "PERSON"),
        ("Dear Jean-Luc, thanks", "Jean-Luc", "PERSON"),
        ("My name is Conor O'Neill", "Conor O'Neill", "PERSON"),
        ("Lucia D'Angelo signed it", "Lucia D'Angelo", "PERSON"),
        ("The server 192.168.1.20 is down", "192.168.1.20", "IP_ADDRESS"),
        ("Send it to 12 Main Street, Springfield", "12 Main Street, Springfield", "ADDRESS"),
        ("mail ann@example.com", "ann@example.com", "EMAIL_ADDRESS"),
        ("call 212-555-0142", "212-555-0142", "PHONE_NUMBER"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx123 ok", "sk-proj-abcdefghijklmnopqrstuvwx123", "CREDENTIAL"),
        ("AWS AKIAIOSFODNN7EXAMPLE leaked", "AKIAIOSFODNN7EXAMPLE", "CREDENTIAL"),
        ("password: hunter22", "hunter22", "CREDENTIAL"),
        ("my social security number is 536-90-4399", "536-90-4399", "US_SSN"),
        ("IBAN DE89370400440532013000", "DE89370400440532013000", "IBAN_CODE"),
        ("card 4111 1111 1111 1111", "4111 1111 1111 1111", "CREDIT_CARD"),
    ],
)
def test_what_a_support_team_must_not_send_is_found_by_default(text: str, value: str, entity: str) -> None:
    assert (value, entity) in _found(text)


def test_a_hyphenated_word_is_not_a_name() -> None:
    assert _found("an Anna-based naming scheme") == set()


def test_detect_all_restores_every_type() -> None:
    assert ("France", "LOCATION") in _found("What's the capital of France?", detect="all")
    assert {e for _, e in _found("on 12/03/2024", detect="all")} == {"DATE_TIME"}
    # Versions are no IP addresses even then.
    assert _found("release 4.2.0.1", detect="all") == set()


def test_a_type_listed_under_entities_is_opted_in() -> None:
    config = PiiConfig(ner="off", entities={"LOCATION": "redact"})  # type: ignore[dict-item]
    plugin = PiiPlugin(config, Deps(Resources(), cpu_workers=1))
    text = "What's the capital of France? Mail ann@example.com"
    found = {(text[s.start : s.end], s.entity_type) for s in plugin._spans(text, False)}
    assert found == {("France", "LOCATION"), ("ann@example.com", "EMAIL_ADDRESS")}


def test_default_set_is_what_the_docs_say() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "pii.md").read_text()
    for name in DEFAULT_ENTITIES:
        assert f"`{name}`" in doc
    assert not DEFAULT_ENTITIES & {"LOCATION", "DATE_TIME", "ORGANIZATION", "NRP", "URL"}


def test_sdk_request_keeps_everyday_words_and_redacts_contact_data(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, "- type: pii\n  ner: off\n") as h:
        client = openai.OpenAI(base_url=h.v1, api_key="sk-client", max_retries=0)
        answer = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {
                    "role": "user",
                    "content": "What's the capital of France? Since release 4.2.0.1 (12 March 2024) "
                    "Sean O'Brien gets no mail at sean@example.com.",
                }
            ],
        )
        sent = json.dumps(h.fake.requests[-1].json)
        for kept in ("France", "4.2.0.1", "12 March 2024"):
            assert kept in sent
        for gone in ("O'Brien", "O\\u0027Brien", "sean@example.com"):
            assert gone not in sent
        assert "<PERSON_1>" in sent and "<EMAIL_ADDRESS_1>" in sent
        assert answer.choices[0].message.content is not None
