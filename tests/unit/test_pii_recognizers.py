"""The pattern rules: what they find, what they leave alone, and that skipped rules never run."""

from __future__ import annotations

from typing import Any

import pytest
import regex

from proxy.detectors.pii import PiiEngine, ner_module
from proxy.detectors.pii.ner import refine
from proxy.detectors.pii.recognizers import Gazetteer, Rule, RuleSet


@pytest.fixture(scope="module")
def engine() -> PiiEngine:
    return PiiEngine("off")


def _found(engine: PiiEngine, text: str, min_score: float = 0.4) -> set[tuple[str, str]]:
    from proxy.detectors.pii import resolve

    spans = resolve(engine.analyze(text, None, min_score), text)
    return {(text[s.start : s.end], s.entity_type) for s in spans}


@pytest.mark.parametrize(
    ("text", "value", "etype"),
    [
        ("They're not answering at 212-555-0142", "212-555-0142", "PHONE_NUMBER"),
        ("Mobile: 99 577450", "99 577450", "PHONE_NUMBER"),
        ("stop the messages to 0680 298 70 63", "0680 298 70 63", "PHONE_NUMBER"),
        ("Desk: +1-903-140-4508x769", "+1-903-140-4508x769", "PHONE_NUMBER"),
        ("card number 630427373398 is lost", "630427373398", "CREDIT_CARD"),  # Maestro, Luhn-valid
        ("send it to 6750 Koskikatu 25 Apt. 864\nArtilleros\n, CO\n Uruguay 64677", None, "ADDRESS"),
        ("Meet me at PSC 1437, Box 3833\nAPO AA 66791", "PSC 1437, Box 3833\nAPO AA 66791", "ADDRESS"),
        ("Megan lives on Via Tasso 129 street.", "Via Tasso 129", "ADDRESS"),
        ("We moved here from Uruguay", "Uruguay", "LOCATION"),
        ("My brother just turned 47", "47", "AGE"),
        ("Date: 1978-04-13 12:20:39", "1978-04-13 12:20:39", "DATE_TIME"),
        ("It was founded in 1977.", "1977", "DATE_TIME"),
        ("see https://FightListings.se/ today", "https://FightListings.se/", "URL"),
        ("visit WholePrices.ch for more", "WholePrices.ch", "URL"),
        ("Dzhambek is from Civic Impulse LLC", "Civic Impulse LLC", "ORGANIZATION"),
        ("I work for Flightstats", "Flightstats", "ORGANIZATION"),
    ],
)
def test_finds(engine: PiiEngine, text: str, value: str | None, etype: str) -> None:
    expected = text.split(" to ", 1)[1] if value is None else value
    assert (expected, etype) in _found(engine, text)


@pytest.mark.parametrize(
    "text",
    [
        "The garden group was founded in spring by three friends and 24 volunteers.",
        "Order 1234567 shipped; we sold 250 000 units at 61% margin.",
        "Open notes.txt and config.py, e.g. the third section.",
        "I am 5 minutes late, sorry.",
        "Card 4111 1111 1111 1112 fails the Luhn check.",
    ],
)
def test_leaves_ordinary_text_alone(engine: PiiEngine, text: str) -> None:
    found = _found(engine, text)
    assert not {e for _, e in found} & {"PHONE_NUMBER", "LOCATION", "URL", "AGE", "CREDIT_CARD"}, found


class CountingPattern:
    """A compiled-regex stand-in that counts how often the engine runs it."""

    def __init__(self, rx: str) -> None:
        self.rx = regex.compile(rx)
        self.pattern = rx
        self.calls = 0

    def finditer(
        self, text: str, pos: int = 0, endpos: int | None = None, timeout: float | None = None
    ) -> Any:
        self.calls += 1
        return self.rx.finditer(text, pos, len(text) if endpos is None else endpos)


def test_a_rule_whose_trigger_is_absent_never_runs() -> None:
    email = CountingPattern(r"\S+@\S+")
    rules = RuleSet([Rule("EMAIL_ADDRESS", email, 0.9, trigger="@")])
    assert rules.scan("no address in this prose at all") == []
    assert email.calls == 0
    hits = rules.scan("write to ann@example.com")
    assert email.calls == 1 and [(h.start, h.end) for h in hits] == [(9, 24)]


def test_a_weak_rule_runs_only_when_one_of_its_context_words_is_in_the_text() -> None:
    ssn = CountingPattern(r"\d{3}-\d{2}-\d{4}")
    rules = RuleSet([Rule("US_SSN", ssn, 0.05, ("ssn", "social"))])
    assert rules.scan("ticket 123-45-6789 is open", min_score=0.4) == []
    assert ssn.calls == 0  # below threshold and nothing could raise it: not even scanned
    hits = rules.scan("my ssn is 123-45-6789", min_score=0.4)
    assert ssn.calls == 1 and len(hits) == 1 and hits[0].score == pytest.approx(0.4)


def test_token_windows_find_the_same_matches_as_a_full_scan() -> None:
    text = "mail a.b@example.com, then c@d.org; no more"
    full = RuleSet([Rule("EMAIL_ADDRESS", regex.compile(r"[\w.]+@[\w.]+\w"), 0.9, trigger="@")])
    windowed = RuleSet(
        [Rule("EMAIL_ADDRESS", regex.compile(r"[\w.]+@[\w.]+\w"), 0.9, trigger="@", window="token")]
    )
    assert windowed.scan(text) == full.scan(text) and len(full.scan(text)) == 2


def test_gazetteer_whole_words_any_case_longest_name() -> None:
    g = Gazetteer(["United States", "United States of America", "Oman"])
    text = "From the United States of America to OMAN, not Romania or Omanis."
    assert [text[s:e] for s, e in (m.span() for m in g.finditer(text))] == [
        "United States of America",
        "OMAN",
    ]


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("Julieta S Almeida\n\nStaff", "ORGANIZATION", ("PERSON", "Julieta S Almeida")),
        ("Wisława Szczepańska's killers", "PERSON", ("PERSON", "Wisława Szczepańska")),
        ("serving Southern Tunisia", "ORGANIZATION", ("LOCATION", "Tunisia")),
        ("change it to Bekbolat Musliyevich", "ORGANIZATION", ("PERSON", "Bekbolat Musliyevich")),
        ("originally from ΕΓΚΩΜΗ", "ORGANIZATION", ("LOCATION", "ΕΓΚΩΜΗ")),
        ("I work for Aunt Bertha Inc", "ORGANIZATION", ("ORGANIZATION", "Aunt Bertha Inc")),
        ("block my card ASAP", "ORGANIZATION", ("ORGANIZATION", "")),
    ],
)
def test_refine_corrects_the_small_models_confusions(
    text: str, label: str, expected: tuple[str, str]
) -> None:
    words = {
        "ORGANIZATION": [
            "Julieta S Almeida\n\nStaff",
            "Southern Tunisia",
            "Bekbolat Musliyevich",
            "ΕΓΚΩΜΗ",
            "Aunt Bertha Inc",
            "ASAP",
        ],
        "PERSON": ["Wisława Szczepańska's"],
    }[label]
    value = next(w for w in words if w in text)
    start = text.index(value)
    etype, s, e = refine(text, label, start, start + len(value))
    assert (etype, text[s:e]) == expected


@pytest.mark.skipif(ner_module() is None, reason="optional NER model not installed")
def test_ner_pipeline_runs_only_the_ner_component() -> None:
    engine = PiiEngine("auto")
    assert engine.uses_model
    assert engine._ner is not None and engine._ner._nlp.pipe_names == ["ner"]


# --- recognisers added for issue #6: titles, postcodes, nationalities, names, places, firms ---


@pytest.mark.parametrize(
    ("text", "value", "etype"),
    [
        ("Hello, this is Dr. Kyle Kuefer. Who are you?", "Dr.", "TITLE"),
        ("Hello, this is Dr. Kyle Kuefer. Who are you?", "Kyle Kuefer", "PERSON"),
        ("For my take on Mrs. Labrie, see the list", "Labrie", "PERSON"),
        (
            "Ann Lee\n\nNetwork and computer systems administrator\n\nPhone:",
            "Network and computer systems administrator",
            "TITLE",
        ),
        ('Marie Langrova, the Technical writer, said: "yes"', "Technical writer", "TITLE"),
        ("ZIP: 94103", "94103", "ZIP_CODE"),
        ("Postcode: SW1A 1AA", "SW1A 1AA", "ZIP_CODE"),
        ("zip code 75534-030", "75534-030", "ZIP_CODE"),
        ("There's this nice new Chechen place downtown.", "Chechen", "NRP"),
        ("a Czech film", "Czech", "NRP"),
        ("Faina D. Yefremova called", "Faina D. Yefremova", "PERSON"),
        ("My name is Aantje Mourik but", "Aantje Mourik", "PERSON"),
        ("Please ask Anna Kowalska first", "Anna Kowalska", "PERSON"),
        ("Ella: What a day.", "Ella", "PERSON"),
        ("Remember me, Maria? When I", "Maria", "PERSON"),
        ("William Hughes\n\n20789 Allika 46", "William Hughes", "PERSON"),
        ("I'm Bojka Zilih, originally from Mavcice, and", "Mavcice", "LOCATION"),
        ("a design agency based in Kulusuk.", "Kulusuk", "LOCATION"),
        ("We'll meet Thursday at Recargo, 73111 31 Seneca Place, Marshland", "Thursday", "DATE_TIME"),
        ("We'll meet Thursday at Recargo, 73111 31 Seneca Place, Marshland", "Recargo", "ORGANIZATION"),
        ("The Avalara office is at PSC 0413, Box 8144\nAPO AA 42323", "Avalara", "ORGANIZATION"),
        ("Allan Bjork\nScale Unlimited\nUnit 5022 Box 1225\nDPO AE 44085", "Scale Unlimited", "ORGANIZATION"),
        (
            "She spent a year at Jones, Mitchell and Williams as",
            "Jones, Mitchell and Williams",
            "ORGANIZATION",
        ),
        ("Zoolander is a 2017 Polish film", "2017", "DATE_TIME"),
        # address grammar: particles as whole words, bullets, parentheses
        (
            "Sven Hedlund\n\n85199 Avda. Rio Nalon 58\n Apt. 461\n Soto del Barco\n\n Spain 61709",
            "85199 Avda. Rio Nalon 58\n Apt. 461\n Soto del Barco\n\n Spain 61709",
            "ADDRESS",
        ),
        (
            "meet you at 010 63 Avenue du Golf Arabe Suite 910\nHellendoorn, OV 21072 after",
            "010 63 Avenue du Golf Arabe Suite 910\nHellendoorn, OV 21072",
            "ADDRESS",
        ),
        (
            "??? Ann Lee\n??? 4923 Parmova 109\n??? Suite 380\n??? Maribor\n??? Slovenia 82709",
            "4923 Parmova 109\n??? Suite 380\n??? Maribor\n??? Slovenia 82709",
            "ADDRESS",
        ),
        ("Jacob lives on 90 Whitchurch Road street.", "90 Whitchurch Road street", "ADDRESS"),
    ],
)
def test_finds_more(engine: PiiEngine, text: str, value: str, etype: str) -> None:
    assert (value, etype) in _found(engine, text)


@pytest.mark.parametrize(
    ("text", "etypes"),
    [
        ("Mr. and Mrs. are titles; ask the dr. today.", {"PERSON", "TITLE"}),  # no name follows
        ("The ZIP file is 1234 bytes; post 12 replies.", {"ZIP_CODE"}),
        ("Thomas Street 5 is closed", {"PERSON"}),  # a street named after someone
        ("We visited the Czech Republic.", {"NRP"}),
        ("I am happy to help, as a developer would.", {"PERSON", "TITLE"}),
        ("Thanks to Ann for the help.", {"PERSON"}),  # a given name alone, no cue: left to NER
        ("He came from behind.", {"LOCATION"}),
        ("The team office is open.", {"ORGANIZATION"}),  # lower-case: no name before "office"
    ],
)
def test_new_rules_leave_ordinary_text_alone(engine: PiiEngine, text: str, etypes: set[str]) -> None:
    found = _found(engine, text)
    assert not {e for _, e in found} & etypes, found


@pytest.mark.parametrize(
    ("text", "value", "label", "expected"),
    [
        ("For Mrs. Labrie, see Guilty Pleasures", "Labrie, see Guilty", "PERSON", ("PERSON", "Labrie")),
        ("in ESPOO today", "ESPOO", "PERSON", ("LOCATION", "ESPOO")),
        ("we returned to Deanwell by car", "Deanwell", "PERSON", ("LOCATION", "Deanwell")),
        (
            "is from Hawkins, Richardson and Santana",
            "Hawkins, Richardson and Santana",
            "PERSON",
            ("ORGANIZATION", "Hawkins, Richardson and Santana"),
        ),
        ("Christine is a good listener", "Christine", "ORGANIZATION", ("PERSON", "Christine")),
        ("Pedestrians must enter", "Pedestrians", "NRP", ("NRP", "")),
        ("a Polish film", "Polish", "NRP", ("NRP", "Polish")),
        ("on Joaquin Suarez 2906", "Joaquin Suarez 2906", "PERSON", ("ADDRESS", "Joaquin Suarez 2906")),
        ("lower case iban here", "iban", "ORGANIZATION", ("ORGANIZATION", "")),
    ],
)
def test_refine_more(text: str, value: str, label: str, expected: tuple[str, str]) -> None:
    start = text.index(value)
    etype, s, e = refine(text, label, start, start + len(value))
    assert (etype, text[s:e]) == expected


def test_one_name_one_type_within_a_text() -> None:
    from proxy.detectors.pii.ner import consistent
    from proxy.detectors.pii.recognizers import Hit

    text = "Nikolaj Petrussen met Acme. Later Nikolaj left Acme."
    hits = [Hit(0, 17, "PERSON", 0.85), Hit(34, 41, "ORGANIZATION", 0.85), Hit(47, 51, "ORGANIZATION", 0.85)]
    out = consistent(text, hits)
    assert [(text[h.start : h.end], h.entity_type) for h in out] == [
        ("Nikolaj Petrussen", "PERSON"),
        ("Nikolaj", "PERSON"),
        ("Acme", "ORGANIZATION"),
    ]


def test_literal_triggers_find_every_occurrence() -> None:
    from proxy.detectors.pii.recognizers import _compile_trigger

    trig = _compile_trigger("=Mr|Dr")
    text = "Dr. Who and Mr. Bean and Dr. No"
    assert trig.search(text) and not trig.search("nothing here")
    assert [f.span() for f in trig.finditer(text)] == [(0, 2), (12, 14), (25, 27)]
