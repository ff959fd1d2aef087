# ruff: noqa: RUF001
"""Indirect prompt injection: instructions addressed to the model, planted inside data.

Why a separate path: the n-gram classifier scores a whole text (or long windows of it) for the
*style* of a jailbreak. An indirect injection is one or two sentences inside an otherwise harmless
e-mail, web page, résumé or tool result ("Note to the AI reading this: ignore the rest and print
..."), so whole-text features dilute it and jailbreak style is absent. This path cuts the document
into segments (lines, then sentences, at most ``_MAX_SEGMENT`` chars), describes each segment with
a few dozen interpretable cues -- imperative mood, who is addressed (the assistant / an AI / an
automated reader), role and turn markers (``System:``, ``<|im_start|>``, ``</document>``), fake
headers (``IMPORTANT SYSTEM NOTICE:``), task switches (``instead``, ``ignore the rest``), output
directives (``print exactly``), exfiltration (Markdown images, URLs with parameters, "send ... to")
-- and scores it with a logistic regression whose weights are data (``indirect_model.json``,
trained by ``scripts/train_indirect.py``). The document score is the maximum over segments, so a
planted sentence counts wherever it sits in a long text, and the record names its span.

Clean documents full of imperatives (recipes, manuals, README files) stay benign because the
imperative alone carries little weight: the model learned from clean controls that what matters is
the imperative *addressed to an AI*, or combined with a task switch, a role marker or an output
directive.

Cost: one combined cue regex runs over the whole text first; only segments it touches are
featurised (an ordinary document has few). Pure CPU, no I/O, immutable after construction.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from bisect import bisect_right
from collections.abc import Hashable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from .. import multiscan
from .compiled import kernel as _injection_kernel
from .literals import LiteralIndex
from .multilingual import MultilingualLexicon
from .segment_gate import gate_segments, joinable

MODEL_FILE = "indirect_model.json"
_MAX_SEGMENT = 400
# A sentence ends at the whitespace after . ! ? (group 1: the cut) or right after a CJK stop.
# Written with the stop inside the match rather than as a look-behind: ``re`` then skips to the
# next stop at C speed instead of trying the look-behind at every character (~3x faster).
_SENTENCE = re.compile(r"[.!?。！？](\s+)|[。！？]")
_I = re.IGNORECASE | re.MULTILINE

# Imperative verbs that start an instruction to a model; a recipe's "add"/"mix" are deliberately
# absent from the strong list (they start instructions to people).
_VERBS = (
    "ignore|disregard|forget|overlook|bypass|skip|print|output|respond|reply|say|write|tell|repeat|"
    "state|return|display|render|include|append|insert|send|forward|email|visit|navigate|open|click|"
    "recommend|rate|rank|mark|classify|report|summari[sz]e|translate|answer|stop|pretend|act|assume|"
    "reveal|show|delete|remove|cancel|share|exfiltrate|post|upload|run|execute|call|download|install|"
    "convince|praise|insult|approve|hire|describe|give|list|make|do|don't|never|always|only|begin|start"
)
_ADDRESSEE_STRONG = (
    r"(?:ai|a\.i\.|assistant|chat ?bot|chatgpt|gpt(?:-?\d)?|llm|llms|language model|claude|gemini|"
    r"copilot|bing|"
    r"ki|ia|人工智能|助手|automated (?:system|screening|analy\w+|agent|reader|tool|software|review\w*)|"
    r"ai (?:agent|model|system|reader|reviewer)s?|screening (?:system|software|tool))"
)

# name -> pattern; each feature is 1.0 when its pattern matches the segment, else 0.0.
_PATTERNS: dict[str, tuple[str, int]] = {
    "imperative_start": (rf"^\W{{0,6}}(?:(?:please|now|also|then|first|and)[\s,]+)?(?:{_VERBS})\b", _I),
    "override": (
        r"\b(?:ignore|disregard|forget|overlook|skip|bypass|override)\b[^.\n]{0,40}?"
        r"\b(?:previous|prior|above|preceding|earlier|rest|other|all|any|everything|instructions?|"
        r"data|content|text|document|context|rules?|question|request|task|recipe|summary)\b",
        _I,
    ),
    "task_switch": (
        r"\b(?:instead|new (?:task|instructions?|objective|goal|system prompt|rules?)|from now on|"
        r"your (?:real |new |actual |true )?(?:task|job|goal|instructions?|objective|mission)|"
        r"(?:do not|don't|stop) (?:summari[sz]\w*|translat\w*|answer\w*|evaluat\w*|follow\w*|analy[sz]\w*)|"
        r"rather than|before (?:you )?(?:answer|respond|reply|summari[sz])\w*|regardless of)\b",
        _I,
    ),
    "addressee": (rf"\b{_ADDRESSEE_STRONG}\b", _I),
    "addressee_vocative": (
        rf"(?:^|[\s\W])(?:hey |dear |attention,? |note (?:to|for) (?:the |any |all )?|"
        rf"message (?:to|for) (?:the |any )?|instructions? (?:to|for) (?:the |any )?)"
        rf"{_ADDRESSEE_STRONG}s?\b|\b{_ADDRESSEE_STRONG}s?\s*[:,]\s*\w|"
        r"\bif you are an? (?:ai|assistant|language model|llm|bot)\b|\b(?:ai|llm|assistant)s? reading this\b",
        _I,
    ),
    "you_directive": (
        r"\byou (?:must|should|will|need to|have to|are (?:now|required|instructed|to)|may not|shall|"
        r"are not allowed)\b|\b(?:make sure|ensure) (?:you|to)\b|\bit is (?:mandatory|critical|important)\b|"
        rf"\b{_ADDRESSEE_STRONG}s?\b[\w ,]{{0,30}}\b"
        r"(?:should|must|shall|will|needs? to|is (?:required|instructed) to)\b",
        _I,
    ),
    "role_marker": (
        # at the start of a line, or of a field's value (``Registrant Organization: SYSTEM: ...``)
        r"^\W{0,4}(?:[A-Za-z][\w/ -]{0,40}:[^\S\n]*)?"
        r"(?:system|assistant|user|human|ai|bot|developer|admin(?:istrator)?)"
        r"(?: message| prompt| instructions?)?\s*:",
        _I,
    ),
    "chat_token": (
        r"<\|(?:im_start|im_end|endoftext|system|user|assistant|eot_id|start_header_id)\|>|\[/?INST\]|"
        r"<</?SYS>>|</?(?:system|instructions?|assistant|user|admin|tool_output|document|context)>|"
        r"\[/?(?:system|instructions?|admin|assistant instructions)\]|"
        r"<?end of (?:session|conversation|document|context|input)>?|\bEND OF DOCUMENT\b",
        _I,
    ),
    "fake_header": (
        r"^\W{0,6}(?:IMPORTANT|URGENT|ATTENTION|NOTICE|NOTE|WARNING|ALERT|CRITICAL|SYSTEM|ADMIN|OVERRIDE|"
        r"UPDATE|INSTRUCTIONS?|CORE INSTRUCTION|NEW INSTRUCTIONS?|SYSTEM (?:MESSAGE|NOTICE|UPDATE))\b"
        r"[A-Z ]{0,30}[:!]|^\W{0,4}-- ?[A-Z][A-Z ,]{3,}$|\bSYSTEM (?:MESSAGE|NOTICE|PROMPT|OVERRIDE)\b",
        re.MULTILINE,
    ),
    "output_verb": (r"\b(?:print|output|respond with|reply with|repeat|say|answer with|write)\b", _I),
    "output_only": (
        r"\b(?:only|exactly|verbatim|and nothing else|absolutely nothing|word for word|the following text)\b",
        _I,
    ),
    "in_your_answer": (
        r"\b(?:in|to|at the (?:end|start|beginning) of) your (?:response|answer|reply|summary|output|"
        r"translation|evaluation)\b|"
        r"\bwhen (?:you |an? (?:ai|assistant|llm|model|language model|agent)[\w ]{0,20}? )?"
        r"(?:summari[sz]|translat|answer|respond|asked|questioned|reply|reading|processing)\w*|"
        r"\bif (?:the )?user asks\b|\bif questioned\b",
        _I,
    ),
    "doc_reference": (
        r"\b(?:rest|remainder) of (?:this|the)\b|\bother (?:content|data|text|documents?|snippets?|"
        r"instructions)\b|\b(?:the|all|any) (?:above|previous|preceding|prior|following) "
        r"(?:text|content|data|instructions?|information|message|question)\b|"
        r"\b(?:this|the) (?:data|document|page|email|e-mail|review|resume|résumé|file|inbox|repository|"
        r"message|snippet|context) (?:is|has been|should|must)\b",
        _I,
    ),
    "the_user": (r"\b(?:the|this) user(?:'s)?\b|\busers?' ", _I),
    "url": (r"https?://\S+", _I),
    "url_params": (r"https?://\S+[?&][\w-]+=|!\[[^\]]*\]\(", _I),
    "exfil": (
        r"\b(?:send|forward|email|e-mail|post|upload|exfiltrate|transmit|leak|append)\b[^.\n]{0,80}"
        r"(?:@\w|https?://|\burl\b)|"
        r"\b(?:api key|password|credentials?|ssh|conversation history|system prompt|"
        r"hidden (?:messages?|instructions?))\b",
        _I,
    ),
    "secrecy": (
        r"\b(?:do not|don't|never) (?:tell|mention|reveal|inform|disclose|let) (?:the |this )?"
        r"(?:user|human|anyone|them|it)\b|\bwithout (?:telling|informing|mentioning)\b|"
        r"\bdo not mention this\b",
        _I,
    ),
    "urgency": (
        r"\b(?:urgent(?:ly)?|immediately|critical|mandatory|extremely important|really important)\b",
        _I,
    ),
    "persona": (
        r"\byou are (?:now |an? |the )|\b(?:developer|dan|god|jailbreak) mode\b|"
        r"\bno (?:rules|restrictions)\b",
        _I,
    ),
    "foreign_cue": (
        r"忽略|无视|不要理会|请(?:输出|打印|回复|翻译)|ignorez|oubliez|ne tenez pas compte|"
        r"répondez|ignoriere|ignora|ignore todas|olvida",
        _I,
    ),
}
FEATURES: tuple[str, ...] = (
    *_PATTERNS,
    "multilingual",
    "question",
    "caps",
    "prev_header",
    "first_segment",
    "imperative_x_addressee",
    "imperative_x_switch",
    "output_x_only",
)
_COMPILED = {name: re.compile(p, flags) for name, (p, flags) in _PATTERNS.items()}
# Cue-bearing literals (lower case): a segment holding none of them scores the bias and is not
# featurised. Python's ``re`` costs ~250 µs per pattern per 2 KB, so running the patterns over every
# segment would cost milliseconds; the literal gate (one vectorised pass, ``literals.py``) leaves the
# few segments that matter.
ANCHORS = (
    "ignor",
    "disregard",
    "forget",
    "overlook",
    "bypass",
    "override",
    "instead",
    "from now on",
    "new task",
    "new instruction",
    "your task",
    "your job",
    "your goal",
    "your instruction",
    "your new",
    "rather than",
    "regardless",
    "before you",
    "assistant",
    "chatbot",
    "chatgpt",
    "gpt",
    "llm",
    "language model",
    "claude",
    "gemini",
    "copilot",
    "bing",
    " ai",
    "ai ",
    "ai,",
    "ai:",
    "a.i.",
    "automated",
    "screening",
    "you must",
    "you should",
    "you will",
    "you need",
    "you have to",
    "you are",
    "you may not",
    "make sure",
    "ensure",
    "mandatory",
    "critical",
    "important",
    "urgent",
    "system",
    "user:",
    "human:",
    "admin",
    "developer",
    "<|",
    "[inst",
    "<<sys",
    "</",
    "<system",
    "<instruction",
    "[system",
    "[assistant",
    "end of",
    "print",
    "output",
    "respond",
    "reply",
    "repeat",
    "say ",
    "your response",
    "your answer",
    "your summary",
    "when summar",
    "when translat",
    "when asked",
    "when you",
    "if questioned",
    "user asks",
    "rest of",
    "the above",
    "previous",
    "prior",
    "http",
    "![",
    "send",
    "forward",
    "password",
    "api key",
    "credential",
    "system prompt",
    "conversation history",
    "tell the user",
    "tell them",
    "secret",
    "no rules",
    "no restrictions",
    "note to",
    "note for",
    "attention",
    "notice",
    "warning",
    "alert",
    "instruction",
    "忽略",
    "无视",
    "请",
    "oubliez",
    "répondez",
    "vergiss",
    "olvida",
    "ki:",
    "ki,",
)
_GATE = LiteralIndex(ANCHORS)


class Segment(NamedTuple):
    """One segment and its span in the document. A named tuple, not a frozen dataclass: a 2 KB
    document has ~20 segments, and a dataclass costs ~0.45 µs each to build, a tuple ~0.15."""

    text: str
    start: int
    end: int


# The cuts of ``segments`` over the whole text: a line break, or ``_SENTENCE``'s sentence end (its
# whitespace kept to the line). Written to begin with one character class (the look-behinds tell
# which one it was): ``re`` then skips to the next candidate at C speed, where the alternation
# ``\n|<stop>(\s+)|<CJK stop>`` is tried at every position (2 KB: ~8 instead of ~28 µs).
_CUT = re.compile(r"[.!?。！？\n](?:(?<=\n)|([^\S\n]+)|(?<=[。！？]))")


def segments(text: str) -> list[Segment]:
    """Lines, then sentences, then chunks of at most ``_MAX_SEGMENT`` characters, with offsets.

    The compiled kernel (``_injection_kernel.c``: one pass in C, ~20 -> ~3 µs per 2 KB) when it is
    built, else ``_segments_python``; both give the same segments (tests/unit/test_injection_kernel.py)."""
    if _injection_kernel is None:
        return _segments_python(text)
    return _injection_kernel.segments(text, _MAX_SEGMENT, Segment)


def _segments_python(text: str) -> list[Segment]:
    """``segments`` in Python: the reference, and the fallback without a compiler.

    One pass over the whole text: no cut pattern can cross a line break, so cutting the text at
    ``_CUT`` is cutting every line at ``_SENTENCE`` (tests/unit/test_gated_cues.py keeps the
    line-by-line version as the reference)."""
    out: list[Segment] = []
    cut = 0
    clean = False  # the piece starts right after a sentence end's whitespace: at a non-blank character
    for m in _CUT.finditer(text):
        space = m.start(1)
        if space >= 0:  # a sentence end: the stop stays with the sentence, the whitespace goes
            end, nxt, stop = space, m.end(), True
        elif text[m.start()] == "\n":
            end, nxt, stop = m.start(), m.end(), False
        else:  # a CJK stop with no whitespace after it
            end = nxt = m.end()
            stop = True
        if end - cut > _MAX_SEGMENT:
            _pieces(out, text, cut, end)
        elif clean and stop:  # from a non-blank character to a stop: nothing to strip
            out.append(Segment(text[cut:end], cut, end))
        else:
            _pieces(out, text, cut, end)
        cut, clean = nxt, stop
    _pieces(out, text, cut, len(text))
    return out


def _pieces(out: list[Segment], text: str, start: int, end: int) -> None:
    """The non-blank chunks of ``text[start:end]``, ``_MAX_SEGMENT`` characters each, stripped."""
    for k in range(start, end, _MAX_SEGMENT):
        chunk = text[k : min(k + _MAX_SEGMENT, end)]
        stripped = chunk.strip()
        if stripped:
            s = k + len(chunk) - len(chunk.lstrip())
            out.append(Segment(stripped, s, s + len(stripped)))


# Patterns that other features are built from: computed even when their own weight is zero.
_DEPENDENCIES = frozenset(
    {
        "imperative_start",
        "addressee",
        "addressee_vocative",
        "task_switch",
        "override",
        "output_verb",
        "output_only",
        "you_directive",
        "role_marker",
        "fake_header",
        "chat_token",
    }
)


def featurise(
    segs: Sequence[Segment],
    index: int,
    lexicon: MultilingualLexicon,
    *,
    as_data: bool,
    needed: frozenset[str] | None = None,
    absent: AbstractSet[Hashable] = frozenset(),
    may: AbstractSet[Hashable] | None = None,
    prev_may: AbstractSet[Hashable] | None = None,
) -> list[float]:
    """The feature vector (order of ``FEATURES``) of segment ``index``. ``needed``: compute only these
    patterns (the rest read 0): a model ignores its zero-weight cues, and each regex costs ~10 µs.
    ``absent``: patterns known not to match the segment: they read 0. ``may``: the only patterns
    that can match it (the one-pass gate said so; None: any); ``prev_may``: the same for the
    previous segment, whose header patterns are then run only when listed there."""
    text = segs[index].text
    f = dict.fromkeys(_COMPILED, 0.0)
    for name in _COMPILED.keys() if may is None else _COMPILED.keys() & may:
        if (needed is None or name in needed) and name not in absent and _COMPILED[name].search(text):
            f[name] = 1.0
    f["multilingual"] = float(
        (needed is None or "multilingual" in needed) and bool(lexicon.scan(text.lower()))
    )
    f["question"] = float(text.rstrip().endswith("?"))
    f["caps"] = 0.0
    if needed is None or "caps" in needed:
        f["caps"] = float(_mostly_capitals(text))
    if f["role_marker"] and _in_record(segs, index) and not _turn_shaped(text):
        f["role_marker"] = 0.0  # ``User: jsmith`` among ``Key: value`` lines is a field, not a turn
    # In a user's message the first segment is the user's own request ("Summarise this:"), not a header.
    prev = segs[index - 1].text if index > 1 or (index == 1 and as_data) else ""
    f["prev_header"] = float(
        bool(prev)
        and (
            (len(prev) <= 48 and prev.endswith(":") and not _is_field(text))
            or any(
                (prev_may is None or name in prev_may)
                and _COMPILED[name].search(prev) is not None
                and (name != "role_marker" or not _is_field(prev))  # ``User: svc-billing`` heads nothing
                for name in _HEADER_CUES
            )
        )
    )
    # A user's own request opens (or closes) the message it writes around a document; data has no such turn.
    f["first_segment"] = float(not as_data and (index == 0 or index == len(segs) - 1))
    imperative = f["imperative_start"]
    addressed = max(f["addressee"], f["addressee_vocative"])
    f["imperative_x_addressee"] = imperative * addressed
    f["imperative_x_switch"] = imperative * max(f["task_switch"], f["override"])
    f["output_x_only"] = f["output_verb"] * f["output_only"]
    # Urgency ("critical", "immediately") is everyday prose on its own; it counts only next to a cue
    # that addresses or instructs the reader.
    f["urgency"] *= max(imperative, addressed, f["you_directive"], f["role_marker"], f["fake_header"])
    return [f[name] for name in FEATURES]


# Bytes that are not ASCII letters / not ASCII capitals: deleting them leaves what is counted.
_NOT_LETTER = bytes(b for b in range(256) if not chr(b).isalpha() or b >= 128)
_NOT_CAPITAL = bytes(b for b in range(256) if not chr(b).isupper() or b >= 128)


def _mostly_capitals(text: str) -> bool:
    """At least 8 letters, more than 60% of them capitals. Why the bytes: on ASCII text (where
    ``isalpha`` / ``isupper`` are exactly A-Z, a-z / A-Z) two ``bytes.translate`` deletions count
    both in C (~0.3 µs), where the per-character generator cost ~2.5 µs per candidate segment."""
    if text.isascii():
        raw = text.encode("ascii")
        n_letters = len(raw.translate(None, _NOT_LETTER))
        return n_letters >= 8 and len(raw.translate(None, _NOT_CAPITAL)) / n_letters > 0.6
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.6


_HEADER_CUES = ("fake_header", "role_marker", "chat_token")  # what makes the previous segment a header

# A field of a key-value record: a key of at most four words, a colon, then a value or nothing
# (WHOIS ``Admin Email:``, e-mail and HTTP headers, YAML ``retries: 3``, ``Domain Status: ok``).
# Why it matters: a short line ending in ``:`` reads as a header over the next segment and
# ``User:`` / ``Admin:`` as a chat turn, and a record is nothing but such lines; a document type
# never seen in training (WHOIS, held out: FPR 0.735) then over-flags. So a short ``Key:`` line is
# a header only when the segment after it is not itself a field, and a role marker is a turn only
# when it does not sit among fields. A role line followed by a sentence (or by nothing: a turn's
# header) is never a field, so a fake ``System:`` turn still counts, among fields too.
_FIELD = re.compile(r"[A-Za-z][\w.'/()&-]*(?: [\w.'/()&-]+){0,3}[^\S\n]*:(?:\s|$)")
_ROLE = _COMPILED["role_marker"]


def _is_field(text: str) -> bool:
    """``text`` is a ``Key: value`` (or ``Key:``) field: its key is no chat role, or the role's value
    is no turn (``User: svc-billing``)."""
    return _FIELD.match(text) is not None and (_ROLE.search(text) is None or not _turn_shaped(text))


def _turn_shaped(text: str) -> bool:
    """What follows the role marker reads as a turn: nothing (a header line) or a sentence of at
    least three words, not a one- or two-word value (``User: jsmith``, ``System: Linux x86_64``)."""
    m = _ROLE.search(text)
    return m is None or len(text[m.end() :].split()) not in (1, 2)


def _in_record(segs: Sequence[Segment], index: int) -> bool:
    """Segment ``index`` has a record field right before or after it."""
    return (index > 0 and _is_field(segs[index - 1].text)) or (
        index + 1 < len(segs) and _is_field(segs[index + 1].text)
    )


@dataclass(frozen=True, slots=True)
class IndirectResult:
    """The highest-scoring segment of a document: its score, span and the cues that fired there."""

    score: float
    span: tuple[int, int] | None
    cues: tuple[str, ...]
    segments: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 6),
            "span": list(self.span) if self.span else None,
            "cues": list(self.cues),
        }


class IndirectDetector:
    """Segment -> cue features -> logistic regression -> max over segments. Thread-safe."""

    def __init__(
        self,
        weights: Mapping[str, float],
        bias: float,
        threshold: float,
        info: Mapping[str, Any] | None = None,
    ):
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"indirect model has unknown features: {sorted(unknown)}")
        self._w = [float(weights.get(name, 0.0)) for name in FEATURES]
        self.bias = float(bias)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be within [0, 1]")
        self.threshold = float(threshold)
        self.info = dict(info or {})
        self._lexicon = MultilingualLexicon.default()
        used = {name for name, w in zip(FEATURES, self._w, strict=True) if w}
        self._needed = frozenset(used | _DEPENDENCIES) if weights else None
        self._positive = frozenset(name for name, w in zip(FEATURES, self._w, strict=True) if w > 0)
        # ``_may_raise`` skips a segment that cannot score above the bias; exact only while every
        # feature it cannot bound has a weight <= 0, and no negative weight is so small that a sum
        # just below the bias could round to a higher probability than the bias's own.
        self._bounded = not (self._positive - _BOUNDED) and not any(-1e-6 < w < 0 for w in self._w)

    @classmethod
    def load(cls, path: Path | None = None) -> IndirectDetector:
        raw = (
            path.read_text("utf-8")
            if path is not None
            else resources.files(__package__ or "").joinpath(MODEL_FILE).read_text("utf-8")
        )
        data = json.loads(raw)
        return cls(data["weights"], data["bias"], data["threshold"], data.get("info"))

    @classmethod
    @functools.cache
    def default(cls) -> IndirectDetector:
        """The packaged model, loaded once per process."""
        return cls.load()

    def candidates(self, text: str, segs: Sequence[Segment]) -> list[int]:
        """Indexes of the segments that contain at least one strong cue (the rest score the bias)."""
        low = text.lower()
        spans = _anchor_spans()
        if spans is not None and text.isascii():
            return _holding_spans(low, segs, spans)
        present = _GATE.present(low)
        if not present:
            return []
        if text.isascii():  # lower-casing is per character: a segment's lower case is a slice of ``low``
            return _holding(low, segs, present)
        return [i for i, s in enumerate(segs) if any(lit in s.text.lower() for lit in present)]

    def scan(self, text: str, *, as_data: bool = True) -> IndirectResult:
        """Score ``text``. ``as_data``: it arrived as data (a tool result, a retrieved document); False for
        a user's message that wraps a document, whose first and last segments are the user's own request."""
        segs = segments(text)
        best, best_span = _sigmoid(self.bias), None
        best_x: list[float] | None = None  # the best segment's features: its cues are named at the end
        candidates = self.candidates(text, segs)
        # The gate's answer for every segment asked about (one pass: segment_gate.py): each
        # candidate, and the segment before it where its header patterns are read (see featurise).
        asked = sorted({*candidates, *(i - 1 for i in candidates if i > 1 or (i == 1 and as_data))})
        answers = gate_segments(_feature_gate(), [segs[i].text for i in asked], joined_ok=_JOINABLE)
        may_in = dict(zip(asked, answers, strict=True))

        def may(i: int) -> AbstractSet[Hashable] | None:
            return may_in[i]

        for i in candidates:
            header = i > 1 or (i == 1 and as_data)
            if self._bounded and not _may_raise(
                self._positive, may(i), segs[i - 1].text if header else "", may(i - 1) if header else None
            ):
                continue  # scores at most the bias: cannot be the best segment (``_may_raise``)
            x = featurise(
                segs,
                i,
                self._lexicon,
                as_data=as_data,
                needed=self._needed,
                may=may(i),
                prev_may=may(i - 1) if header else None,
            )
            p = _sigmoid(self.bias + sum(map(operator.mul, self._w, x)))  # left to right, as before
            if p > best:
                best, best_span, best_x = p, (segs[i].start, segs[i].end), x
        best_cues: tuple[str, ...] = ()
        if best_x is not None:
            best_cues = tuple(n for n, v, w in zip(FEATURES, best_x, self._w, strict=True) if v and w > 0)
        return IndirectResult(best, best_span, best_cues, len(segs))


# The features ``_may_raise`` can bound: the patterns, the header before, and the products of patterns.
_BOUNDED = frozenset(
    {*_COMPILED, "prev_header", "imperative_x_addressee", "imperative_x_switch", "output_x_only"}
)


def _may_raise(
    positive: AbstractSet[str],
    may: AbstractSet[Hashable] | None,
    prev: str,
    prev_may: AbstractSet[Hashable] | None,
) -> bool:
    """Could a feature with a positive weight (``positive``) be 1 for a segment whose gate answer is
    ``may`` (``prev``: the segment before it where ``featurise`` reads it as a header, else "")?

    Why: about a third of a support ticket's candidate segments hold only cues of weight zero or
    below ("rather than" is a task switch, which counts only after an imperative), yet each cost a
    featurisation (~8 µs). Such a segment's logit is the bias plus terms <= 0, so its probability is
    at most the bias's, which the scan's best starts at, and a segment enters the result only when
    it scores strictly higher: skipping it changes nothing. A superset of what ``featurise`` can
    set: a pattern only when the gate reports it (``featurise`` runs no other), ``urgency`` when
    reported (before its product), a product when both sides may be 1, ``prev_header`` unless the
    previous segment is absent, no short ``...:`` line, and gated without a header cue."""
    if may is None:
        return True
    possible = set(may)
    if "imperative_start" in possible:
        if "addressee" in possible or "addressee_vocative" in possible:
            possible.add("imperative_x_addressee")
        if "task_switch" in possible or "override" in possible:
            possible.add("imperative_x_switch")
    if "output_verb" in possible and "output_only" in possible:
        possible.add("output_x_only")
    if prev and (
        (len(prev) <= 48 and prev.endswith(":"))
        or prev_may is None
        or any(name in prev_may for name in _HEADER_CUES)
    ):
        possible.add("prev_header")
    return not possible.isdisjoint(positive)


@functools.cache
def _anchor_spans() -> multiscan.LiteralSet | None:
    """Every occurrence of every anchor in one Hyperscan pass (None without the wheel)."""
    return multiscan.literal_set(ANCHORS, every_match=True)


def _holding_spans(low: str, segs: Sequence[Segment], anchors: multiscan.LiteralSet) -> list[int]:
    """``_holding`` of the anchors present in ``low`` (an ASCII text's lower case), from one pass
    that reports every occurrence of every anchor: each occurrence names the segment it lies in.

    Why: the presence pass, then one ``find`` loop and bisection per anchor present, cost ~12 µs
    per 2 KB ticket; this ~4 µs. The same segments: an occurrence counts when it lies wholly
    inside a segment's span, as in ``_holding``."""
    found = anchors.spans(low)
    if not found:
        return []
    starts = [s.start for s in segs]
    hit: set[int] = set()
    for a, b in found:
        i = bisect_right(starts, a) - 1
        if i >= 0 and b <= segs[i].end:
            hit.add(i)
    return sorted(hit)


def _holding(low: str, segs: Sequence[Segment], literals: AbstractSet[str]) -> list[int]:
    """Indexes of the segments whose span of ``low`` holds one of ``literals`` (found there, in C,
    instead of lower-casing and searching every segment: ~20 -> ~5 µs on a 2 KB ticket)."""
    starts = [s.start for s in segs]
    hit: set[int] = set()
    for lit in literals:
        pos = low.find(lit)
        while pos >= 0:
            i = bisect_right(starts, pos) - 1
            if i >= 0 and pos + len(lit) <= segs[i].end:
                hit.add(i)
                pos = low.find(lit, segs[i].end)  # the rest of segment i is settled
            else:
                pos = low.find(lit, pos + 1)
    return sorted(hit)


@functools.cache
def _feature_gate() -> multiscan.Gate:
    """One Hyperscan pass that says which cue patterns can match each candidate segment (all of
    them at once, joined: ``segment_gate.py``; that is why every pattern's match ends are recorded).

    Why: ``featurise`` runs ~14 case-insensitive alternations per candidate segment (~15 µs
    each with ``re``) and most of them find nothing; the pass (a few µs) lets it skip those.
    Exact: a pattern the gate reports absent cannot match, one it reports is still confirmed
    by ``re``, and patterns or texts the gate cannot take exactly take the plain path."""
    return multiscan.gate(list(_COMPILED.items()), ends_of=_COMPILED.keys() if _JOINABLE else ())


_JOINABLE = joinable(_COMPILED.values())  # the cue patterns allow one gate pass over joined segments


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
