"""The compiled token piece counter (proxy/tokens/_piece_counter.c) counts exactly what tiktoken does.

Why: the budget step's reservations and the ``usage`` estimates rest on these counts, and the
fast path re-implements tiktoken's pre-tokeniser regexes by hand (for ASCII), caching one count
per piece. Any divergence (a class of characters, the order of the regex alternatives, a
boundary next to a non-ASCII character where tiktoken is asked to decide) would show as a
different count here: every comparison is against ``len(encoding.encode_ordinary(text))``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.tokens import counting, fast_count
from proxy.tokens._piece_counter import PieceCounter
from proxy.tokens.encodings import get_encoding
from tests.datasets import dataset_or_skip

ENCODINGS = ("cl100k_base", "o200k_base")
FAST = settings(max_examples=400, deadline=None)
# Every class the scanner tells apart, and the non-ASCII characters where Unicode matters: a
# letter and a mark, case-folding twins of ASCII letters (long s, Kelvin sign), Unicode spaces
# (NBSP, NEL, ideographic), a superscript digit, CJK, an emoji, a lone surrogate, and the ASCII
# controls that Python calls whitespace but Unicode does not (\x1c-\x1f).
TRICKY = (
    "aZs'tdmlrve "
    "\t\n\r\x0b\x0c/0123456789!.,-_\"'?(\x00\x1c\x1f\x7f"
    "é\u0301\u017f\u212a\u00a0\u0085\u3000\u00b2\u4e2d\U0001f600\ud800"
)
TEXTS = st.text(alphabet=TRICKY, max_size=80)
ASCII_TEXTS = st.text(alphabet=st.characters(max_codepoint=127), max_size=120)
# Few characters, so that runs, line breaks at the end and contractions come up often.
DENSE_TEXTS = st.text(alphabet="aB \n\r\t/!'sé", max_size=40)


def _tiktoken(name: str, text: str) -> int:
    return len(get_encoding(name).encode_ordinary(text))


def _counter(name: str) -> PieceCounter:
    counter = fast_count.piece_counter(get_encoding(name))
    assert counter is not None
    return counter


def test_the_piece_counter_is_built() -> None:
    """Fails (rather than skips) where setup.py could not build the module: budgets would then pay
    a full tiktoken encode per text. Build it with ``python setup.py build_ext --inplace``."""
    assert fast_count.compiled(), "proxy/tokens/_piece_counter.c is not built"
    for name in ENCODINGS:
        assert fast_count.piece_counter(get_encoding(name)) is not None


@pytest.mark.parametrize("name", ENCODINGS)
@FAST
@given(text=TEXTS)
def test_counts_equal_tiktoken_on_tricky_text(name: str, text: str) -> None:
    assert _counter(name).count(text) == _tiktoken(name, text)


@pytest.mark.parametrize("name", ENCODINGS)
@FAST
@given(text=DENSE_TEXTS)
def test_counts_equal_tiktoken_on_dense_text(name: str, text: str) -> None:
    assert _counter(name).count(text) == _tiktoken(name, text)


@pytest.mark.parametrize("name", ENCODINGS)
@FAST
@given(text=ASCII_TEXTS)
def test_counts_equal_tiktoken_on_any_ascii(name: str, text: str) -> None:
    assert _counter(name).count(text) == _tiktoken(name, text)


ADVERSARIAL = [
    "",
    "'s 'S 'll 'LL 'Ve 're 'rE 'd 'm 't 'x 'l 'v 'r",
    "don't DON'T they'RE we'Ve I'll it's '\u017f '\u212a \u017fo",
    "HELLOworld helloWorld ABC abc A a HTTPServer iOS",
    "1 12 123 1234 12345 1,234.56 ²³ 4²",
    "  \n\n  x\r\n\r\ny \t\tz   \n",
    "trailing spaces   ",
    "trailing newline \n\n",
    " \x0b\x0c \x1c\x1f\x7f\x00",
    "a\n/b\n//c\n/é\n é\né/x\r\n/",
    "!\n/x ?\n\n/\n",
    "é!\n/x",  # o200k's punctuation pieces take "/" after a line break: no boundary there
    "é!\n//",
    "end of text\n  ",  # o200k: the line break first, then the spaces; cl100k: one piece
    "end\n \t",
    "naïve café — 東京 🙂 <|endoftext|> \t\n  spaces   and\r\nlines",
    "mixed\nline é\nnext line\n\u00a0nbsp\nplain\n",
    "\u3000\n\u0085\nx\u00a0 y\n",
    "caf\u00e9 au lait, don\u2019t \u201cquote\u201d x\u00a0 y \u00e9  z \u00e9\t w",
    "a" * 5000,
    " " * 3000 + "x",
    "\n" * 500 + "/" * 200,
    "emoji 🙂\n" * 50,
    "\ud800 lone surrogate\nafter",
]


@pytest.mark.parametrize("name", ENCODINGS)
@pytest.mark.parametrize("text", ADVERSARIAL)
def test_counts_equal_tiktoken_on_adversarial_text(name: str, text: str) -> None:
    assert _counter(name).count(text) == _tiktoken(name, text)


def _strings(node: object) -> Iterator[str]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _dataset_texts(path: Path, budget: int = 200_000) -> list[str]:
    """Up to ``budget`` characters of a dataset's strings, one text per string, then joined in
    blocks of 8 with line breaks (texts of a few KB, with the line boundaries the counter splits at)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        raw = f.read()
    name = path.name.removesuffix(".gz")
    found: list[str] = []
    if name.endswith(".jsonl"):
        for line in raw.splitlines():
            if line.strip():
                found.extend(_strings(json.loads(line)))
    elif name.endswith(".json"):
        found.extend(_strings(json.loads(raw)))
    elif name.endswith(".csv"):
        for row in csv.reader(io.StringIO(raw)):
            found.extend(row)
    texts: list[str] = []
    total = 0
    for text in found:
        if total > budget:
            break
        texts.append(text)
        total += len(text)
    return texts + ["\n".join(texts[i : i + 8]) for i in range(0, len(texts), 8)]


DATASET_FILES = [
    ("injection", "garak_probes.jsonl.gz"),
    ("injection", "gptfuzz_jailbreak_templates.jsonl"),
    ("injection", "jailbreak_test.csv"),
    ("moderation", "multijail.jsonl.gz"),
    ("moderation", "davidson_labeled_data.csv"),
    ("moderation", "openai_moderation_samples_1680.jsonl.gz"),
    ("pii", "presidio_synth_dataset_v2.json"),
]


@pytest.mark.parametrize(("folder", "file"), DATASET_FILES)
def test_counts_equal_tiktoken_on_the_datasets(folder: str, file: str) -> None:
    texts = _dataset_texts(dataset_or_skip(folder, file))
    assert texts
    for name in ENCODINGS:
        counter = _counter(name)
        wrong = [t[:80] for t in texts if counter.count(t) != _tiktoken(name, t)]
        assert not wrong, f"{name}: {len(wrong)} texts differ, e.g. {wrong[:3]}"


def test_non_ascii_lines_are_left_to_tiktoken_and_ascii_lines_are_not() -> None:
    """The split at line boundaries is what keeps mostly-ASCII text on the fast path."""
    counter = fast_count.new_counter(get_encoding("cl100k_base"))  # a fresh one: its stats are this test's
    text = "plain line one\nune ligne en français\nplain line three\n"
    assert counter.count(text) == _tiktoken("cl100k_base", text)
    stats = counter.stats()
    # From the piece that reads the first non-ASCII character to the next line start.
    assert stats["fallback_chars"] == len(" français\n")
    assert stats["hits"] + stats["misses"] > 0


def test_a_non_ascii_word_is_left_to_tiktoken_up_to_the_next_safe_space() -> None:
    """A space after an ASCII non-space character is a certain boundary: the scanner resumes there."""
    counter = fast_count.new_counter(get_encoding("o200k_base"))
    text = "the caf\u00e9 is open and the na\u00efve \u00a0 x are here"
    assert counter.count(text) == _tiktoken("o200k_base", text)
    # From the piece that reads a non-ASCII character to the next space after an ASCII non-space:
    # " café is" (the space after "é" does not count), " naïve" (the space after "e" does), and
    # " \u00a0 x" (NBSP is whitespace: the spaces around it do not count).
    fallback = len(" caf\u00e9 is") + len(" na\u00efve") + len(" \u00a0 x")
    assert counter.stats()["fallback_chars"] == fallback


def test_mostly_non_ascii_text_goes_to_tiktoken_in_one_call() -> None:
    """Each hand-over is a Python call: after a few, the rest of the text is one call (so text in
    another script costs about what tiktoken costs, not a call per word)."""
    counter = fast_count.new_counter(get_encoding("cl100k_base"))
    text = "caf\u00e9 au lait " * 200
    assert counter.count(text) == _tiktoken("cl100k_base", text)
    fallback = counter.stats()["fallback_chars"]
    assert fallback > len(text) * 0.9  # one stretch per "café" would hand over a third of it


def test_mostly_new_pieces_fall_back_to_one_encode() -> None:
    """Random strings miss the cache; past the allowance the rest is one tiktoken call, so a
    client sending noise costs about what tiktoken costs, not a call per piece."""
    counter = fast_count.new_counter(get_encoding("o200k_base"))
    rnd = random.Random(3)
    noise = " ".join("".join(rnd.choices("bcdfghjklmnpqrstvwxz", k=9)) for _ in range(2000))
    assert counter.count(noise) == _tiktoken("o200k_base", noise)
    stats = counter.stats()
    assert stats["misses"] < 200
    assert stats["fallback_chars"] > len(noise) * 0.9


def test_the_piece_cache_is_bounded() -> None:
    counter = fast_count.new_counter(get_encoding("cl100k_base"))
    for i in range(40_000):  # one new piece (a letter run) per text: each miss is cached
        word = "q" + "".join(chr(97 + (i // 26**k) % 26) for k in range(4))
        assert counter.count(word) == _tiktoken("cl100k_base", word)
    stats = counter.stats()
    assert stats["resets"] >= 1
    assert stats["entries"] <= 32_768


def test_long_texts_are_encoded_by_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FAST_MAX_CHARS tiktoken counts (it releases the GIL; the scanner does not)."""
    monkeypatch.setattr(fast_count, "FAST_MAX_CHARS", 10)
    enc = get_encoding("cl100k_base")
    calls: list[str] = []

    class Spy:
        def count(self, text: str) -> int:
            calls.append(text)
            return -1

    monkeypatch.setitem(fast_count._counters, "cl100k_base", Spy())
    assert fast_count.count_tokens(enc, "short text") == -1
    assert fast_count.count_tokens(enc, "a longer text than ten") == _tiktoken(
        "cl100k_base", "a longer text than ten"
    )
    assert calls == ["short text"]


def test_without_the_compiled_counter_counts_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["hello world", "naïve café\nplain", "x" * 100]
    expected = [fast_count.count_tokens(get_encoding("o200k_base"), t) for t in texts]
    monkeypatch.setattr(fast_count, "_piece_counter", None)
    monkeypatch.setattr(fast_count, "_counters", {})
    counting._counts.clear()
    assert [fast_count.count_tokens(get_encoding("o200k_base"), t) for t in texts] == expected
    assert [counting.count_text(t, "gpt-4o") for t in texts] == expected


def test_unknown_encodings_and_bad_arguments_are_refused() -> None:
    from proxy.tokens._piece_counter import PieceCounter

    enc = get_encoding("cl100k_base")
    with pytest.raises(ValueError, match="no pre-tokeniser"):
        PieceCounter("p50k_base", enc._core_bpe.encode_single_piece, enc.encode_ordinary)
    with pytest.raises(TypeError):
        PieceCounter("cl100k_base", 1, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _counter("cl100k_base").count(b"bytes")  # type: ignore[arg-type]
    bare = PieceCounter.__new__(PieceCounter)  # no __init__: no table, no tiktoken
    for call in (lambda: bare.count("x"), bare.stats, bare.clear):
        with pytest.raises(RuntimeError, match="not initialised"):
            call()


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4", "claude-3-5-sonnet"])
def test_plain_messages_count_as_the_general_walk_counts_them(model: str) -> None:
    """count_chat_request's shortcut for {"role", "content"} messages (and its memo-free short
    texts) against the general per-message walk, forced by read-only mappings."""
    from types import MappingProxyType

    from proxy.tokens.counting import count_chat_request

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful assistant.\nAnswer briefly."},
        {"role": "user", "content": "naïve question: what's 2+2?" * 3},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "x" * 70},
        {"role": "tool", "content": "y", "tool_call_id": "call_1"},  # 3 keys: the general walk
        {"role": "user", "content": ["not", "a", "string"]},
    ]
    body = {"model": model, "messages": messages}
    general = {"model": model, "messages": [MappingProxyType(m) for m in messages]}
    assert count_chat_request(body) == count_chat_request(general)
    enc = get_encoding("o200k_base" if model.startswith("gpt-4o") else "cl100k_base")
    by_hand = 3 + sum(
        3 + _tiktoken(enc.name, m["role"]) + _tiktoken(enc.name, m["content"])
        for m in messages[:4]
        if isinstance(m["content"], str)
    )
    tool = 3 + _tiktoken(enc.name, "tool") + _tiktoken(enc.name, "y") + _tiktoken(enc.name, "call_1")
    listed = 3 + _tiktoken(enc.name, "user") + sum(_tiktoken(enc.name, t) for t in ("not", "a", "string"))
    assert count_chat_request(body) == by_hand + tool + listed


def test_threads_sharing_one_counter_get_exact_counts() -> None:
    """Counting runs in the CPU pool too, and tiktoken releases the GIL inside the counter's
    calls: other threads then insert into (or empty) the same cache meanwhile."""
    import threading

    enc = get_encoding("o200k_base")
    counter = fast_count.new_counter(enc)
    wrong: list[str] = []

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(300):
            words = ["".join(rnd.choices("abcdefghij", k=rnd.randint(2, 7))) for _ in range(20)]
            words.insert(rnd.randint(0, 20), "caf\u00e9")  # one hand-over to tiktoken per text
            text = " ".join(words)
            if counter.count(text) != len(enc.encode_ordinary(text)):
                wrong.append(text)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong
    assert counter.stats()["misses"] > 1000  # the threads really did fill the cache concurrently
