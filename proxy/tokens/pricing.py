"""Model prices and request cost, for cost budgets.

The built-in table holds *defaults*: public list prices (USD per 1M tokens, standard tier, no
batch/priority/regional discounts or surcharges) as published by OpenAI, Anthropic, Google and
AWS at the time of writing. Prices change and contracts differ, so a policy should override
them; pass the policy's table as ``overrides`` to :func:`price_for_model`. Unknown models
return ``None`` rather than a guess: the caller decides whether that means "deny", "allow" or
"count tokens only".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field

from proxy.tokens.encodings import normalize_model


class Price(BaseModel):
    """USD per 1M tokens. ``cached_input`` is the prompt-cache read price; ``None`` = no discount."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


def _p(input: float, output: float, cached_input: float | None = None) -> Price:
    return Price(input=input, output=output, cached_input=cached_input)


DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        # OpenAI
        "gpt-4o": _p(2.50, 10.00, 1.25),
        "gpt-4o-mini": _p(0.15, 0.60, 0.075),
        "gpt-4.1": _p(2.00, 8.00, 0.50),
        "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
        "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
        "o3": _p(2.00, 8.00, 0.50),
        "o3-mini": _p(1.10, 4.40, 0.55),
        "o4-mini": _p(1.10, 4.40, 0.275),
        "gpt-3.5-turbo": _p(0.50, 1.50),
        "text-embedding-3-small": _p(0.02, 0.0),
        "text-embedding-3-large": _p(0.13, 0.0),
        # Anthropic (cached_input = cache read; cache *writes* cost more and are not modelled)
        "claude-3-5-sonnet": _p(3.00, 15.00, 0.30),
        "claude-3-5-haiku": _p(0.80, 4.00, 0.08),
        "claude-sonnet-4": _p(3.00, 15.00, 0.30),
        "claude-opus-4": _p(15.00, 75.00, 1.50),
        "claude-opus-4-1": _p(15.00, 75.00, 1.50),
        "claude-3-7-sonnet": _p(3.00, 15.00, 0.30),
        "claude-3-haiku": _p(0.25, 1.25, 0.03),
        "claude-3-opus": _p(15.00, 75.00, 1.50),
        # Google Gemini, Gemini Developer API paid tier, text, prompts up to 200k tokens (128k for
        # 1.5), from https://ai.google.dev/gemini-api/docs/pricing as published in 2025 (not
        # re-fetched on 2026-12-07: override in the policy). Vertex AI lists some models higher
        # (https://cloud.google.com/vertex-ai/generative-ai/pricing): override for vertex.
        # Longer prompts cost more and are not modelled; no cached price = no discount assumed.
        "gemini-2.5-pro": _p(1.25, 10.00),
        "gemini-2.5-flash": _p(0.30, 2.50),
        "gemini-2.5-flash-lite": _p(0.10, 0.40),
        "gemini-2.0-flash": _p(0.10, 0.40, 0.025),
        "gemini-2.0-flash-lite": _p(0.075, 0.30),
        "gemini-1.5-pro": _p(1.25, 5.00),
        "gemini-1.5-flash": _p(0.075, 0.30),
        # Amazon Bedrock on-demand, us-east-1, from https://aws.amazon.com/bedrock/pricing/ as
        # published in 2025 (same caveat). Claude on Bedrock is priced as Anthropic's API (the
        # "anthropic." / "us." id prefixes are stripped, so the entries above apply).
        "nova-premier": _p(2.50, 12.50),
        "nova-pro": _p(0.80, 3.20),
        "nova-lite": _p(0.06, 0.24),
        "nova-micro": _p(0.035, 0.14),
        "mistral-large": _p(4.00, 12.00),
    }
)
"""Defaults to be overridden in the policy; see the module docstring."""

# What may follow a table key for the entry to still apply: version/date decorations only, e.g.
# "-2024-08-06", "-0125", "-20241022", "-latest", "-v1:0" (Bedrock), "@20241022" (Vertex),
# "-002" (Gemini stable versions).
# Anything else is a different model: "o3-pro" must not be priced as "o3" (10x cheaper), nor
# "gpt-4o-realtime-preview" as "gpt-4o".
_VERSION_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-\d{3}|-latest|-v\d+(?::\d+)?|@\d{8})*")


def price_for_model(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """Price of ``model`` by longest matching table key, or ``None`` if no key matches.

    ``model`` is normalised first (provider prefixes, case, fine-tune wrapper stripped), so
    ``"azure/gpt-4o-2024-08-06"`` finds ``"gpt-4o"``. A key matches when it equals the name or is
    followed only by version/date suffixes; the longest matching key wins so that
    ``"gpt-4o-mini-2024-07-18"`` gets ``gpt-4o-mini``, not ``gpt-4o``. Keys in ``overrides``
    replace defaults of the same name and take part in the same longest-prefix search.
    """
    table: Mapping[str, Price] = DEFAULT_PRICES if not overrides else {**DEFAULT_PRICES, **overrides}
    name = normalize_model(model)
    best: str | None = None
    for key in table:
        k = key.lower()
        if (
            name.startswith(k)
            and _VERSION_SUFFIX.fullmatch(name, len(k)) is not None
            and (best is None or len(k) > len(best))
        ):
            best = key
    return table[best] if best is not None else None


def cost_usd(price: Price, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
    """Cost in USD of one call.

    ``cached_tokens`` is the part of ``prompt_tokens`` served from the prompt cache, as in
    OpenAI's ``usage.prompt_tokens_details.cached_tokens`` (Anthropic reports cache reads
    *separately* from ``input_tokens``: add them to ``prompt_tokens`` before calling). Cached
    tokens cost ``cached_input`` when the price has one, else the full input price.
    """
    if prompt_tokens < 0 or completion_tokens < 0 or cached_tokens < 0:
        raise ValueError("token counts must be non-negative")
    if cached_tokens > prompt_tokens:
        raise ValueError(f"cached_tokens ({cached_tokens}) exceeds prompt_tokens ({prompt_tokens})")
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    micro_usd = (
        (prompt_tokens - cached_tokens) * price.input
        + cached_tokens * cached_rate
        + completion_tokens * price.output
    )
    return micro_usd / 1_000_000
