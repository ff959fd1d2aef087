"""proxy.tokens: offline encodings, request token estimates, image rule, prices.

Ground truth comes from outside this package where possible: token ids and chat counts published
in OpenAI's cookbook ("How to count tokens with tiktoken", verified there against the API),
tiktoken's own encoding definitions, and OpenAI's documented image examples. Every test runs with
downloads made impossible (see ``_no_network``).
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public as openai_public  # type: ignore[import-untyped]
from pydantic import ValidationError

from proxy.tokens import (
    DEFAULT_PRICES,
    BpeFileError,
    Price,
    build_encoding,
    cost_usd,
    count_chat_request,
    count_completion_reserve,
    count_text,
    encoding_for_model,
    encoding_name_for_model,
    get_encoding,
    image_tokens,
    normalize_model,
    price_for_model,
)
from proxy.tokens import encodings as encodings_mod
from proxy.tokens.counting import SCHEMA_OVERHEAD
from proxy.tokens.images import data_url_dimensions


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Make every way tiktoken could download fail loudly; return the paths tiktoken read."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    real_read_file = tiktoken.load.read_file
    reads: list[str] = []

    def guarded_read_file(blobpath: str) -> bytes:
        reads.append(blobpath)
        if "://" in blobpath:
            raise NetworkUsed(f"tiktoken tried to fetch {blobpath}")
        return real_read_file(blobpath)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkUsed(f"network/registry call attempted: {args!r}")

    monkeypatch.setattr(tiktoken.load, "read_file", guarded_read_file)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(tiktoken, "get_encoding", refuse)
    monkeypatch.setattr(tiktoken.registry, "get_encoding", refuse)
    try:
        import requests
    except ImportError:  # pragma: no cover - requests is only tiktoken's download path
        pass
    else:
        monkeypatch.setattr(requests, "get", refuse)
        monkeypatch.setattr(requests.Session, "request", refuse)
    return reads


# --- encodings ---------------------------------------------------------------------------------


def test_encodings_load_from_bundled_files_without_any_download(
    monkeypatch: pytest.MonkeyPatch, _no_network: list[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(encodings_mod, "_cache", {})  # force a real load under the guards
    cl100k = get_encoding("cl100k_base")
    o200k = get_encoding("o200k_base")
    assert cl100k.encode("hello world") == [15339, 1917]
    assert len(o200k.encode("hello world")) == 2
    assert _no_network, "tiktoken.load.read_file was not used: the loader bypassed tiktoken"
    assert all(Path(p).parent == encodings_mod.BPE_DIR for p in _no_network), _no_network
    assert get_encoding("cl100k_base") is cl100k  # cached: built once per process


def test_encoding_specs_match_tiktokens_own_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """pat_str, special tokens and pinned hashes must equal tiktoken_ext.openai_public's."""
    pinned: dict[str, str | None] = {}

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        pinned[url.rsplit("/", 1)[-1].removesuffix(".tiktoken")] = expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    for ctor in (openai_public.cl100k_base, openai_public.o200k_base):
        ref = ctor()
        enc = get_encoding(ref["name"])
        assert enc._pat_str == ref["pat_str"]
        assert enc._special_tokens == ref["special_tokens"]
        assert encodings_mod._SPECS[ref["name"]].sha256 == pinned[ref["name"]]


@pytest.mark.parametrize(
    ("encoding", "text", "ids"),
    [  # published in OpenAI's cookbook
        ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
        ("cl100k_base", "antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191]),
        ("o200k_base", "antidisestablishmentarianism", [493, 129901, 376, 160388, 21203, 2367]),
        ("cl100k_base", "2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19]),
        ("o200k_base", "2 + 2 = 4", [17, 659, 220, 17, 314, 220, 19]),
        ("cl100k_base", "お誕生日おめでとう", [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699]),
        ("o200k_base", "お誕生日おめでとう", [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
    ],
)
def test_known_token_ids(encoding: str, text: str, ids: list[int]) -> None:
    assert get_encoding(encoding).encode(text) == ids


def test_count_text_exact_counts_and_special_token_text_is_plain_text() -> None:
    assert count_text("hello world", "gpt-4") == 2
    assert count_text("hello world", "gpt-4o") == 2
    assert count_text("tiktoken is great!", "gpt-4o-mini") == 6
    assert count_text("", "gpt-4o") == 0
    # Client text that spells a special token must neither raise nor collapse into one token.
    assert count_text("<|endoftext|>", "gpt-4o") > 1


def test_corrupted_bpe_file_fails_hash_check(tmp_path: Path) -> None:
    bad = tmp_path / "cl100k_base.tiktoken"
    shutil.copyfile(encodings_mod.BPE_DIR / "cl100k_base.tiktoken", bad)
    data = bytearray(bad.read_bytes())
    data[100] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(BpeFileError, match=r"failed its SHA-256 check .*expected 223921b7"):
        build_encoding("cl100k_base", bpe_path=bad)
    bad.write_bytes(b"")
    with pytest.raises(BpeFileError, match="SHA-256"):
        build_encoding("cl100k_base", bpe_path=bad)
    with pytest.raises(BpeFileError, match="not found"):
        build_encoding("cl100k_base", bpe_path=tmp_path / "missing.tiktoken")
    with pytest.raises(KeyError, match="p50k_base"):
        build_encoding("p50k_base")


def test_concurrent_first_use_builds_each_encoding_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def slow_build(name: str, bpe_path: Path | None = None) -> object:
        built.append(name)
        time.sleep(0.05)
        return object()

    monkeypatch.setattr(encodings_mod, "_cache", {})
    monkeypatch.setattr(encodings_mod, "build_encoding", slow_build)
    barrier = threading.Barrier(8)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        results.append(get_encoding("o200k_base"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == ["o200k_base"]
    assert len(results) == 8 and all(r is results[0] for r in results)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("openai:gpt-4o-mini", "o200k_base"),
        ("azure/gpt-4.1", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("azure/gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-sonnet-4-20250514", "cl100k_base"),
        ("meta-llama/Llama-3.1-8B-Instruct", "cl100k_base"),
        ("mistral-large-latest", "cl100k_base"),
        ("gemini-1.5-pro", "cl100k_base"),
        ("", "cl100k_base"),
    ],
)
def test_model_to_encoding(model: str, encoding: str) -> None:
    assert encoding_name_for_model(model) == encoding
    assert encoding_for_model(model).name == encoding


def test_normalize_model() -> None:
    assert normalize_model("Azure/GPT-4o") == "gpt-4o"
    assert normalize_model("openrouter/openai/gpt-4o") == "gpt-4o"
    assert normalize_model("openai:gpt-4.1") == "gpt-4.1"
    assert normalize_model("llama3:8b") == "llama3:8b"  # a tag, not a provider
    assert normalize_model("us.anthropic.claude-3-5-haiku-20241022-v1:0") == "claude-3-5-haiku-20241022-v1:0"


# --- chat / responses counting -----------------------------------------------------------------

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "api_count"),  # the cookbook's numbers, which it checked against the API
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_cookbook_chat_example(model: str, api_count: int) -> None:
    assert count_chat_request({"model": model, "messages": COOKBOOK_MESSAGES}) == api_count
    # explicit model argument wins over the body's
    assert count_chat_request({"model": "claude-x", "messages": COOKBOOK_MESSAGES}, model) == api_count


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(("model", "api_count"), [("gpt-4", 105), ("gpt-4o", 101)])
def test_tools_estimate_is_conservative_but_close(model: str, api_count: int) -> None:
    body = {"model": model, "messages": WEATHER_MESSAGES, "tools": [WEATHER_TOOL]}
    without = count_chat_request({"model": model, "messages": WEATHER_MESSAGES})
    schema = json.dumps(WEATHER_TOOL["function"], separators=(",", ":"))
    estimate = count_chat_request(body)
    assert estimate == without + SCHEMA_OVERHEAD + count_text(schema, model)
    # The cookbook's API-measured count: never under (budget safety), at most 25% over.
    assert api_count <= estimate <= api_count * 1.25
    # Legacy "functions" and Responses-style flat tools describe the same thing.
    assert count_chat_request({**body, "tools": None, "functions": [WEATHER_TOOL["function"]]}) == estimate
    two = count_chat_request({**body, "tools": [WEATHER_TOOL, WEATHER_TOOL]})
    assert two - estimate == count_text(schema, model)


def test_tool_calls_and_tool_results_are_counted() -> None:
    enc = get_encoding("o200k_base")
    args = '{"location":"Paris, FR"}'
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
    ]

    def n(text: str) -> int:
        return len(enc.encode(text))

    expected = (
        3
        + (3 + n("user") + n("Weather in Paris?"))
        + (3 + n("assistant") + 3 + n("get_weather") + n(args))
        + (3 + n("tool") + n("call_1") + n("18C and sunny"))
    )
    assert count_chat_request({"model": "gpt-4o", "messages": messages}) == expected


def test_content_parts_and_images() -> None:
    base = count_chat_request({"model": "gpt-4o", "messages": [{"role": "user", "content": "Describe"}]})

    def with_parts(*parts: dict[str, Any]) -> int:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": [*parts]}]}
        return count_chat_request(body) - base

    text = {"type": "text", "text": "Describe"}
    assert with_parts(text) == 0
    url = "https://example.com/cat.png"
    assert with_parts(text, {"type": "image_url", "image_url": {"url": url, "detail": "low"}}) == 85
    assert with_parts(text, {"type": "image_url", "image_url": {"url": url}}) == 765  # assumed 1024x1024
    assert with_parts(text, {"type": "image_url", "image_url": {"url": url, "detail": "high"}}) == 765
    big = _data_url(_png(2048, 4096), "png")
    assert with_parts(text, {"type": "image_url", "image_url": {"url": big, "detail": "high"}}) == 1105
    assert with_parts(text, {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}) == 0


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # OpenAI's documented examples
        (2048, 4096, "high", 1105),
        (4096, 8192, "low", 85),
        (512, 512, "auto", 255),  # never upscaled: one tile
        (100, 3000, "high", 85 + 170 * 4),  # fit 2048: 68x2048 -> 1x4 tiles
        (4000, 3000, "high", 85 + 170 * 4),  # fit 2048: 2048x1536, short side 768: 1024x768 -> 2x2
        (1536, 768, "high", 85 + 170 * 6),  # already within both limits: 3x2 tiles
    ],
)
def test_image_tile_rule(width: int, height: int, detail: str, tokens: int) -> None:
    assert image_tokens(width, height, detail) == tokens


def test_image_dimensions_are_read_from_data_url_headers() -> None:
    assert data_url_dimensions(_data_url(_png(640, 480), "png")) == (640, 480)
    gif = b"GIF89a" + struct.pack("<HH", 300, 200) + b"\x00" * 10
    assert data_url_dimensions(_data_url(gif, "gif")) == (300, 200)
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 1080, 1920, 1) + b"\x01\x11\x00"
    assert data_url_dimensions(_data_url(b"\xff\xd8" + app0 + sof0, "jpeg")) == (1920, 1080)
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (4999).to_bytes(3, "little")
    vp8x += (2999).to_bytes(3, "little")
    assert data_url_dimensions(_data_url(b"RIFF\x00\x00\x00\x00WEBP" + vp8x, "webp")) == (5000, 3000)
    vp8l = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", 799 | (599 << 14))
    assert data_url_dimensions(_data_url(b"RIFF\x00\x00\x00\x00WEBP" + vp8l, "webp")) == (800, 600)
    vp8 = b"VP8 " + struct.pack("<I", 10) + b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", 320, 240)
    assert data_url_dimensions(_data_url(b"RIFF\x00\x00\x00\x00WEBP" + vp8, "webp")) == (320, 240)
    sos_first = b"\xff\xd8" + b"\xff\xda" + struct.pack(">H", 8) + b"\x00" * 20
    assert data_url_dimensions(_data_url(sos_first, "jpeg")) is None
    assert data_url_dimensions("data:image/png;base64,not-an-image") is None
    assert data_url_dimensions("https://example.com/x.png") is None


def test_responses_api_bodies() -> None:
    enc = get_encoding("o200k_base")

    def n(text: str) -> int:
        return len(enc.encode(text))

    body = {"model": "gpt-4.1", "instructions": "Be brief.", "input": "hello world"}
    assert count_chat_request(body) == 3 + (3 + n("system") + n("Be brief.")) + (3 + n("user") + 2)
    # An item list counts like the equivalent chat messages.
    chat = count_chat_request({"model": "gpt-4o", "messages": COOKBOOK_MESSAGES})
    items = [{"type": "message", **m} for m in COOKBOOK_MESSAGES]
    assert count_chat_request({"model": "gpt-4o", "input": items}) == chat == 124
    image = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}
    parts = [{"role": "user", "content": [{"type": "input_text", "text": "hi"}, image]}]
    assert count_chat_request({"model": "gpt-4o", "input": parts}) == 3 + 3 + n("user") + n("hi") + 85
    calls = [
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "reasoning", "summary": []},
    ]
    assert count_chat_request({"model": "o3", "input": calls}) == 3 + (3 + n("get_weather") + n("{}")) + (
        3 + n("sunny")
    )
    flat_tool = {"type": "function", **WEATHER_TOOL["function"]}
    with_tool = count_chat_request({"model": "gpt-4o", "input": "hi", "tools": [flat_tool]})
    assert with_tool - count_chat_request({"model": "gpt-4o", "input": "hi"}) == SCHEMA_OVERHEAD + n(
        json.dumps(flat_tool, separators=(",", ":"))
    )


def test_malformed_bodies_do_not_raise() -> None:
    assert count_chat_request({}) == 3
    assert count_chat_request({"messages": "nope", "input": 5, "tools": "x"}) == 3
    assert count_chat_request({"messages": [None, 3, {"content": [None, {"type": 7}]}]}) == 3 + 3


def test_completion_reserve() -> None:
    assert count_completion_reserve({}) == 4096
    assert count_completion_reserve({}, default=1000) == 1000
    assert count_completion_reserve({"max_tokens": 100, "n": 3}) == 300
    assert count_completion_reserve({"max_completion_tokens": 50, "max_tokens": 100}) == 50
    assert count_completion_reserve({"max_output_tokens": 70}) == 70
    assert count_completion_reserve({"max_tokens": None, "n": None}) == 4096
    assert count_completion_reserve({"max_tokens": True, "n": 0}) == 4096


# --- pricing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("azure/gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai:gpt-4.1-nano", "gpt-4.1-nano"),
        ("o3-2025-04-16", "o3"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ],
)
def test_price_lookup_longest_prefix(model: str, key: str) -> None:
    assert price_for_model(model) == DEFAULT_PRICES[key]


@pytest.mark.parametrize(
    "model", ["o3-pro", "gpt-4o-realtime-preview", "gpt-4", "llama3:8b", "claude-opus-4-5"]
)
def test_unknown_or_different_models_have_no_price(model: str) -> None:
    assert price_for_model(model) is None


def test_price_overrides() -> None:
    cheap = Price(input=1.0, output=2.0)
    assert price_for_model("gpt-4o-2024-11-20", {"gpt-4o": cheap}) == cheap
    assert price_for_model("gpt-4o-mini", {"gpt-4o": cheap}) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for_model("acme/my-llm-20250101", {"my-llm": cheap}) == cheap
    # A dated key beats its family key (longest match), and only for that date.
    dated = {"gpt-4o-2024-05-13": Price(input=5.0, output=15.0)}
    assert price_for_model("gpt-4o-2024-05-13", dated) == dated["gpt-4o-2024-05-13"]
    assert price_for_model("gpt-4o-2024-08-06", dated) == DEFAULT_PRICES["gpt-4o"]


def test_cost_usd() -> None:
    gpt4o = DEFAULT_PRICES["gpt-4o"]  # 2.50 in, 1.25 cached, 10.00 out per 1M
    assert cost_usd(gpt4o, 1_000_000, 100_000, cached_tokens=200_000) == pytest.approx(3.25)
    assert cost_usd(gpt4o, 1000, 0) == pytest.approx(0.0025)
    no_cache = Price(input=0.5, output=1.5)
    assert cost_usd(no_cache, 1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="exceeds"):
        cost_usd(gpt4o, 10, 0, cached_tokens=11)
    with pytest.raises(ValueError, match="non-negative"):
        cost_usd(gpt4o, -1, 0)


def test_price_is_frozen_and_validated() -> None:
    price = Price(input=1.0, output=2.0, cached_input=0.5)
    with pytest.raises(ValidationError):
        setattr(price, "input", 3.0)  # noqa: B010 - the assignment itself is under test
    with pytest.raises(ValidationError):
        Price(input=-1.0, output=2.0)


# --- helpers -----------------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _data_url(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()
