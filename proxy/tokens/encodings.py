"""Offline tiktoken encodings and the model -> encoding mapping.

Why this module exists: ``tiktoken.get_encoding`` downloads its BPE rank files from a public
blob store on first use. A sidecar that sits in the request path cannot depend on that (air-gapped
clusters, CI without internet, cold starts stalling on a download), so the two rank files we need
ship inside the package (``proxy/tokens/bpe/``, see its README for provenance) and this module
builds the ``tiktoken.Encoding`` objects itself from them. ``tiktoken.get_encoding`` is never
called.

The regexes, special tokens and SHA-256 hashes below are copied from tiktoken's own
``tiktoken_ext/openai_public.py``; the hash is passed to ``tiktoken.load.load_tiktoken_bpe`` so a
truncated or tampered file fails loudly instead of silently producing wrong counts.

Note on tiktoken's cache: ``load_tiktoken_bpe`` runs even local paths through its file cache, so
the first load also copies the file into ``$TIKTOKEN_CACHE_DIR`` (default
``$TMPDIR/data-gym-cache``). That is harmless (the copy is hash-checked on every read) and never
touches the network; an unwritable *default* cache dir is ignored by tiktoken.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import tiktoken
import tiktoken.load

BPE_DIR = Path(__file__).resolve().parent / "bpe"

DEFAULT_ENCODING = "cl100k_base"
"""Used for every model we do not know, including non-OpenAI ones (Claude, Llama, Mistral,
Gemini...). Those providers use their own tokenizers, so counts for them are *estimates*: for
English prose cl100k is typically within ~10-20% of them, which is good enough for budgets and
rate limits but not for billing reconciliation. Use the provider's reported ``usage`` for that."""

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True, slots=True)
class _Spec:
    pat_str: str
    special_tokens: dict[str, int]
    sha256: str


_SPECS: dict[str, _Spec] = {
    "cl100k_base": _Spec(
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
            r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            _ENDOFPROMPT: 100276,
        },
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": _Spec(
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

ENCODING_NAMES: tuple[str, ...] = tuple(_SPECS)


class BpeFileError(RuntimeError):
    """A bundled BPE rank file is missing, corrupted or not the official one.

    This is an installation problem, never a request problem: reinstall the package or restore
    the file from ``proxy/tokens/bpe`` (its README lists the expected SHA-256).
    """


def build_encoding(name: str, bpe_path: Path | None = None) -> tiktoken.Encoding:
    """Build encoding ``name`` from a local rank file, verifying its SHA-256. Not cached.

    ``bpe_path`` defaults to the bundled file; tests pass a corrupted copy to prove the check
    bites. Prefer :func:`get_encoding`, which builds each encoding once per process.
    """
    spec = _SPECS.get(name)
    if spec is None:
        raise KeyError(f"unknown encoding {name!r}; bundled encodings: {', '.join(ENCODING_NAMES)}")
    path = bpe_path if bpe_path is not None else BPE_DIR / f"{name}.tiktoken"
    if not path.is_file():
        raise BpeFileError(f"BPE rank file for {name} not found at {path}")
    try:
        ranks = tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=spec.sha256)
    except ValueError as exc:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        raise BpeFileError(
            f"BPE rank file {path} failed its SHA-256 check for {name}: expected {spec.sha256}, "
            f"got {actual}. The file is corrupted or not OpenAI's published {name} ranks; "
            "restore it from proxy/tokens/bpe (see README.md there)."
        ) from exc
    enc = tiktoken.Encoding(
        name=name, pat_str=spec.pat_str, mergeable_ranks=ranks, special_tokens=spec.special_tokens
    )
    # The Rust core (``_core_bpe``) holds its own copy of the ranks; the Python dict the
    # ``Encoding`` keeps is only read when the object is pickled, which the sidecar never does
    # (counting runs in threads). Dropping it frees ~15 MB for cl100k and ~30 MB for o200k, and
    # giving the build's transient allocations back to the OS another ~5-10 MB (issue 17: RSS).
    del ranks
    enc._mergeable_ranks = {}
    _trim_heap()
    return enc


def _trim_heap() -> None:
    """Return freed heap to the OS after a build (glibc ``malloc_trim``; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


_cache: dict[str, tiktoken.Encoding] = {}
_cache_lock = threading.Lock()


def get_encoding(name: str) -> tiktoken.Encoding:
    """Return bundled encoding ``name``, built at most once per process (thread-safe).

    Building o200k takes a few hundred milliseconds and ~100 MB of transient allocations, so
    concurrent first callers must not each build their own copy: the lock is held across the build.
    The lock-free read first keeps the hot path (every request) free of contention.
    """
    enc = _cache.get(name)
    if enc is not None:
        return enc
    with _cache_lock:
        enc = _cache.get(name)
        if enc is None:
            enc = build_encoding(name)
            _cache[name] = enc
        return enc


def preload_encodings(names: tuple[str, ...] = ENCODING_NAMES) -> None:
    """Build encodings up front (e.g. at startup) so the first request does not pay for it."""
    for name in names:
        get_encoding(name)


# --- model names -----------------------------------------------------------------------------

# Routers and SDKs prefix models with a provider ("openai:gpt-4o", "azure/gpt-4o",
# "openrouter/openai/gpt-4o"). Only these words are stripped before a ":" so that tags such as
# "llama3:8b" keep their meaning.
_PROVIDER_PREFIXES = frozenset(
    {
        "openai", "azure", "azure_ai", "anthropic", "bedrock", "vertex_ai", "vertex", "google",
        "gemini", "mistral", "groq", "openrouter", "together_ai", "fireworks_ai", "deepseek", "xai",
    }
)  # fmt: skip
# Bedrock ids: "anthropic.claude-...", "us.anthropic.claude-...".
_BEDROCK_VENDOR = re.compile(r"^(?:[a-z]{2}\.)?(?:anthropic|meta|mistral|amazon|cohere|ai21)\.")


def normalize_model(model: str) -> str:
    """Canonical lower-case model name without provider prefixes or fine-tune decorations.

    ``"azure/GPT-4o"`` -> ``"gpt-4o"``, ``"openai:gpt-4.1"`` -> ``"gpt-4.1"``,
    ``"ft:gpt-4o-mini-2024-07-18:org::abc"`` -> ``"gpt-4o-mini-2024-07-18"``,
    ``"us.anthropic.claude-3-5-haiku-20241022-v1:0"`` -> ``"claude-3-5-haiku-20241022-v1:0"``.
    """
    name = model.strip().lower().rsplit("/", 1)[-1]
    while True:
        head, sep, rest = name.partition(":")
        if not (sep and rest and head in _PROVIDER_PREFIXES):
            break
        name = rest
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return _BEDROCK_VENDOR.sub("", name)


# Checked in order, first match wins: o200k families first because "gpt-4o"/"gpt-4.1" also start
# with the cl100k prefix "gpt-4". Mirrors tiktoken.model for the families we ship.
_PREFIX_TO_ENCODING: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-oss", "o200k_base"),  # o200k_harmony: same ranks, extra special tokens only
    ("codex-", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),  # Azure deployment spelling
    ("text-embedding-", "cl100k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
)


@lru_cache(maxsize=4096)
def encoding_name_for_model(model: str) -> str:
    """Name of the encoding used to count tokens for ``model``; cached because it runs per request.

    Unknown and non-OpenAI models get :data:`DEFAULT_ENCODING` (an estimate, see there).
    """
    name = normalize_model(model)
    for prefix, encoding in _PREFIX_TO_ENCODING:
        if name.startswith(prefix):
            return encoding
    return DEFAULT_ENCODING


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The (cached, offline) ``tiktoken.Encoding`` to count ``model``'s tokens with."""
    return get_encoding(encoding_name_for_model(model))
