"""Route planning: aliases, ordered and weighted targets, model globs, colons in model names."""

from __future__ import annotations

import pytest

from proxy.models.upstream import Candidate
from proxy.policy.schema import RouteSpec, TargetSpec, UpstreamConfig
from proxy.upstream.routing import RouteTable

UPSTREAMS = {
    "openai": UpstreamConfig(base_url="https://api.openai.com/v1"),
    "anthropic": UpstreamConfig(base_url="https://api.anthropic.com", provider="anthropic"),
    "local": UpstreamConfig(base_url="http://127.0.0.1:11434/v1", models=("llama*",)),
}


def _table(*routes: RouteSpec, rand: float = 0.0) -> RouteTable:
    return RouteTable(routes, UPSTREAMS, "openai", rand=lambda: rand)


def test_ordered_alias_with_models_per_target() -> None:
    table = _table(
        RouteSpec(match="gpt-4o", targets=("openai", "anthropic:claude-sonnet-4", "local:llama3:8b"))
    )
    assert table.plan("gpt-4o") == (
        Candidate("openai", "gpt-4o"),
        Candidate("anthropic", "claude-sonnet-4"),
        Candidate("local", "llama3:8b"),
    )


def test_unrouted_models_use_upstream_globs_then_the_default() -> None:
    table = _table()
    assert table.plan("llama3:70b") == (Candidate("local", "llama3:70b"),)
    assert table.plan("o3") == (Candidate("openai", "o3"),)


@pytest.mark.parametrize(("rand", "first"), [(0.0, "openai"), (0.89, "openai"), (0.91, "anthropic")])
def test_weighted_first_choice_then_heaviest_first(rand: float, first: str) -> None:
    spec = RouteSpec(
        match="ab-*",
        strategy="weighted",
        targets=(TargetSpec(target="openai", weight=90), TargetSpec(target="anthropic", weight=10)),
    )
    plan = _table(spec, rand=rand).plan("ab-test")
    assert plan[0].upstream == first
    assert {c.upstream for c in plan} == {"openai", "anthropic"}


def test_first_matching_route_wins() -> None:
    table = _table(
        RouteSpec(match="gpt-4o-mini", targets=("local",)), RouteSpec(match="gpt-4o*", targets=("openai",))
    )
    assert table.plan("gpt-4o-mini")[0].upstream == "local"
    assert table.plan("gpt-4o-2024")[0].upstream == "openai"
