"""The detection engine: offline (no model download, no suffix-list fetch), custom recognisers, NER."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from plugins.pii import PiiConfig
from proxy.detectors.pii import CustomRecognizer, PiiEngine, ner_module


def test_engine_builds_and_analyses_without_any_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    custom = CustomRecognizer.model_validate(
        {
            "entity_type": "EMPLOYEE_ID",
            "patterns": [{"regex": r"\bE-\d{6}\b", "score": 0.3}],
            "context": ["employee"],
            "deny_list": ["Project Falcon"],
        }
    )
    engine = PiiEngine("off", (custom,))
    assert engine.ner_model is None
    text = "mail ann.lee@mail.example.org, employee E-123456, about Project Falcon"
    found = {(text[s.start : s.end], s.entity_type, round(s.score, 2)) for s in engine.analyze(text, None, 0)}
    assert ("ann.lee@mail.example.org", "EMAIL_ADDRESS", 1.0) in found
    assert ("Project Falcon", "EMPLOYEE_ID", 1.0) in found
    bare = engine.analyze("id E-654321 here", None, 0)
    with_context = [s for s in engine.analyze(text, None, 0) if s.entity_type == "EMPLOYEE_ID"]
    assert max(s.score for s in with_context) > max(s.score for s in bare)  # context word raised it
    assert not any(e == "PERSON" for _, e, _ in found)


def test_ner_required_without_a_model_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.detectors.pii.engine.ner_module", lambda: None)
    with pytest.raises(RuntimeError, match="ner: required"):
        PiiEngine("required")


@pytest.mark.skipif(ner_module() is None, reason="optional NER model not installed (pip install '.[ner]')")
def test_ner_finds_names_when_the_model_is_installed() -> None:
    engine = PiiEngine("auto")
    text = "My name is Maria Gonzalez and I live in Barcelona."
    types = {(text[s.start : s.end], s.entity_type) for s in engine.analyze(text, None, 0.5)}
    assert ("Maria Gonzalez", "PERSON") in types


def test_config_validation() -> None:
    cfg = PiiConfig.model_validate({"type": "pii", "ner": False, "entities": {"CREDIT_CARD": "block"}})
    assert cfg.ner == "off" and cfg.entities["CREDIT_CARD"].action == "block"
    with pytest.raises(ValueError, match="redis"):
        PiiConfig.model_validate({"type": "pii", "backend": "redis"})
    with pytest.raises(ValueError, match="entity type"):
        PiiConfig.model_validate({"type": "pii", "entities": {"bad-name": "mask"}})
