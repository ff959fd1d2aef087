"""spaCy NER for names, places, organisations and nationalities, with only the pipes it needs.

Why not presidio's ``SpacyNlpEngine``: it runs the whole pipeline (tok2vec, tagger, parser,
attribute ruler, lemmatiser, ner) to get lemmas for context words. In ``en_core_web_sm`` the
``ner`` component has its own embedded tok2vec, so everything else is excluded at load time;
that alone roughly halves the cost per KB. Context words are handled on plain words by the
pattern rules instead (recognizers.py), so no lemmas are needed.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

from proxy.detectors.pii.gazetteer import COUNTRIES, DEMONYMS
from proxy.detectors.pii.names import GIVEN_NAMES
from proxy.detectors.pii.recognizers import Hit

#: spaCy label -> presidio entity type (presidio's own mapping, ``DATE``/``TIME`` left to the
#: date patterns: spaCy's DATE also tags "yesterday", "last spring", "the 1990s").
LABELS = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "NORP": "NRP",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "ORG": "ORGANIZATION",
}
NER_SCORE = 0.85  # presidio's SpacyRecognizer default: spaCy gives no per-entity confidence
#: Everything the English pipelines carry besides ``ner`` (which embeds its own tok2vec).
DROP_PIPES = ("tok2vec", "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")
BATCH = 16
#: The small model tags unfamiliar place names (``from ΕΓΚΩΜΗ``, ``in KAJAANI``) as ORG; after
#: these words an ORG is far more often a place. Either way the span is redacted.
PLACE_CUE = re.compile(r"(?i)\b(?:from|in|near|visit|visiting|around)\s+$")
#: ... and unfamiliar personal names as ORG: after a salutation, "name is", "said" it is a person.
PERSON_CUE = re.compile(
    r"(?i)(?:\b(?:name is|i am|i'm|called|dear|hi|hello|said|asked|told|ask|under|with|to|by)"
    r"|\b(?:mr|mrs|ms|miss|dr|prof)\.?)\s+$"
)
#: Words that make a multi-word ORG an organisation; a two or three word ORG without one, all
#: capitalised words ("Sigrid Nyström", "Zoe Young"), is far more often a name.
ORG_WORDS = frozenset(
    """inc ltd llc plc gmbh ag sa corp corporation co company companies group global systems
    technologies technology tech labs lab bank insurance university college school institute
    foundation association orchestra weekly daily news times media partners holdings services
    solutions software data health capital financial finance energy international industries
    network networks studio studios club council ministry department agency office hospital
    church museum press records airlines motors foods pharma consulting analytics ventures
    trust fund society union federation committee commission league team investments investment
    bros brothers associates enterprises limited incorporated""".split()  # noqa: SIM905 (a word list)
)
#: ... and a one-word PERSON after these is a place ("returned to Deanwell by helicopter").
PERSON_PLACE_CUE = re.compile(
    r"(?i)\b(?:originally from|arrived at|arrived in|returned to|moved to|based in|born in|lives in"
    r"|living in|located in|near|from)\s+$"
)
#: an entity never runs on past a comma into a lower-case clause
_CLAUSE = re.compile(r",\s+(?=[a-z])")
#: "Becker and Vasquez", "Jones, Smith and Davis": surnames joined by "and" name a firm.
_FIRM = re.compile(r"^[^\W\d_][\w\-]+(?:, [^\W\d_][\w\-]+)* (?:and|&) [^\W\d_][\w\-]+$")
_CUE_WINDOW = 24
_COUNTRIES = frozenset(c.lower() for c in COUNTRIES)
_DEMONYMS = frozenset(d.lower() for d in DEMONYMS)
#: "Faina D. Yefremova", "Ruth R Montez": a middle initial makes a name whatever the model says.
_INITIAL_NAME = re.compile(r"^[^\W\d_][\w\-]+ [^\W\d_a-z]\.? [^\W\d_][\w\-]+$")


def refine(text: str, etype: str, start: int, end: int) -> tuple[str, int, int]:
    """Small, model-independent corrections of a spaCy entity (type and extent).

    * a name or organisation never spans lines (``Julieta S Almeida\n\nStaff``): cut at the
      first newline; a trailing possessive ``'s`` is not part of the name;
    * a span ending in a country name is that country (``Southern Tunisia``); a name with a
      middle initial is a PERSON;
    * an ORG with an organisation word (Inc, Group, Bank, ...) stays one; a one-word all-caps
      ORG of up to four letters (ASAP, IBAN) is dropped; otherwise an ORG of two or three
      capitalised words, or after a person cue, is a PERSON, and after a place cue a LOCATION
      (the small model's commonest confusions on unfamiliar names).
    """
    value = text[start:end]
    if etype in ("PERSON", "ORGANIZATION", "LOCATION", "NRP"):
        cut = value.find("\n")
        if cut > 0:
            end = start + len(value[:cut].rstrip())
        clause = _CLAUSE.search(text, start, end)  # "Labrie, see ...", "Finland, but Celina"
        if clause is not None and clause.start() > start:
            end = clause.start()
        for suffix in ("'s", "\u2019s"):
            if text[start:end].endswith(suffix) and end - start > len(suffix):
                end -= len(suffix)
    value = text[start:end]
    words = value.split()
    for n in (3, 2, 1):  # "Southern Tunisia" -> the country; a country is never a name
        tail = " ".join(words[-n:]).lower()
        if len(words) >= n and tail in _COUNTRIES and text[end - len(tail) : end].lower() == tail:
            return "LOCATION", end - len(tail), end
    if _INITIAL_NAME.match(value):
        return "PERSON", start, end
    if etype == "PERSON" and any(c.isdigit() for c in value):
        return "ADDRESS", start, end  # "Joaquin Suarez 2906": a street named after someone
    if etype == "PERSON" and len(words) == 1:
        if value.isupper() and len(value) >= 4:
            return "LOCATION", start, end  # ESPOO, LYCKSELE: all-caps is how addresses write towns
        if PERSON_PLACE_CUE.search(text[max(0, start - _CUE_WINDOW) : start]):
            return "LOCATION", start, end  # "arrived at Ettelgem", "originally from Mavčiče"
    if etype == "NRP" and value.endswith("s") and value.lower().rstrip("s") not in _DEMONYMS:
        return etype, start, start  # "Pedestrians", "Hobbits": plural nouns, not a group's name
    if etype in ("ORGANIZATION", "LOCATION") and len(words) == 1 and value.lower() in GIVEN_NAMES:
        return "PERSON", start, end  # "Christine", "Darren": a known given name, not a company
    if etype in ("ORGANIZATION", "PERSON") and _FIRM.match(value):
        return "ORGANIZATION", start, end  # "Barnett, Melton and Garcia": a firm of partners
    if etype == "ORGANIZATION":
        if value.islower() and len(words) == 1:
            return etype, start, start  # "iban", "c617": the model's guesses on lower-case text
        before = text[max(0, start - _CUE_WINDOW) : start]
        if len(words) == 1 and value.isupper() and len(value) <= 4:
            return etype, start, start  # ASAP, IBAN, CO: acronyms, not an identifying name
        if any(w.lower().strip(".,&") in ORG_WORDS for w in words):
            return etype, start, end
        if 2 <= len(words) <= 3 and all(w[:1].isupper() for w in words):
            etype = "PERSON"
        elif PLACE_CUE.search(before):
            etype = "LOCATION"
        elif PERSON_CUE.search(before):
            etype = "PERSON"
    return etype, start, end


class NerModel:
    """A loaded spaCy pipeline reduced to ``ner``; ``find`` is safe to call from several threads."""

    def __init__(self, module: str) -> None:
        mod: Any = importlib.import_module(module)
        self._nlp = mod.load(exclude=list(DROP_PIPES))  # names a pipeline lacks are ignored
        try:
            self._nlp("Warm up Ann Lee in Paris.")
        except Exception:  # a pipeline whose ner listens to the shared tok2vec: keep that too
            self._nlp = mod.load(exclude=[p for p in DROP_PIPES if p != "tok2vec"])
        if not self._nlp.has_pipe("ner"):
            raise RuntimeError(f"pii: spaCy pipeline {module} has no ner component")
        self.entities = frozenset({*LABELS.values(), "ADDRESS"})  # refine() finds street names

    def find(self, texts: Sequence[str], wanted: frozenset[str] | None) -> list[list[Hit]]:
        out: list[list[Hit]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if wanted is not None and not (wanted & self.entities):
            return out
        docs = self._nlp.pipe((texts[i] for i in todo), batch_size=BATCH)
        for i, doc in zip(todo, docs, strict=True):
            for ent in doc.ents:
                label = LABELS.get(ent.label_)
                if label is None:
                    continue
                etype, start, end = refine(doc.text, label, ent.start_char, ent.end_char)
                if end > start:
                    out[i].append(Hit(start, end, etype, NER_SCORE))
            out[i] = [h for h in consistent(doc.text, out[i]) if wanted is None or h.entity_type in wanted]
        return out


def consistent(text: str, hits: list[Hit]) -> list[Hit]:
    """One name, one type within a text: the small model tags "Nikolaj Petrussen" a PERSON
    and, two sentences on, "Nikolaj" alone an ORG or a place. A one-word entity that is a word
    of a multi-word PERSON in the same text is that person."""
    names = {
        w
        for h in hits
        if h.entity_type == "PERSON" and len(words := text[h.start : h.end].split()) > 1
        for w in words
        if len(w) > 2 and w[:1].isupper()
    }
    if not names:
        return hits
    return [
        Hit(h.start, h.end, "PERSON", h.score)
        if h.entity_type in ("ORGANIZATION", "LOCATION") and text[h.start : h.end] in names
        else h
        for h in hits
    ]
