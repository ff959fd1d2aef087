"""Tests for the offline moderation detector (proxy.detectors.moderation).

Dataset-backed tests read ../shared/datasets/moderation/ and skip with a reason when it is absent.
"""

from __future__ import annotations

import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from proxy.detectors.injection import InjectionClassifier, InjectionDetector
from proxy.detectors.moderation import (
    CATEGORIES,
    CLASSIFIER_CATEGORIES,
    ModerationClassifier,
    ModerationDetector,
    RuleScanner,
    Thresholds,
    canonicalise,
)
from proxy.detectors.moderation import rules as rules_module
from proxy.detectors.shared import ScanCache
from tests.datasets import shared_datasets

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = shared_datasets("moderation")
PKG_DIR = REPO / "proxy" / "detectors" / "moderation"


def benign_hard() -> list[str]:
    lines = (PKG_DIR / "benign_hard.txt").read_text("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def detector() -> ModerationDetector:
    return ModerationDetector()


@pytest.fixture(scope="module")
def scanner() -> RuleScanner:
    return RuleScanner.default()


def rule_ids(scanner: RuleScanner, text: str) -> set[str]:
    return {h.rule_id for h in scanner.scan(text).hits}


# --- canonicalisation and rules ---------------------------------------------------------------------


def test_canonicalise_folds_leet_and_runs_but_not_numbers() -> None:
    c = canonicalise("K1LLL y0uuu $lut 4ss kill -9 1234")
    assert c.text == "kill you slut ass kill -9 1234"  # runs: 'l' squeezes to two, 'u' to one
    assert c.alt is not None and c.alt.startswith("kll ")  # the 1 -> l reading
    assert canonicalise("b!tch, wow!").text == "bitch, wow!"
    assert canonicalise("port 8080, x86").text == "port 8080, x86"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I will k1ll you", "violence"),
        ("i w1ll kiiiill y0u tonight", "violence"),
        ("you are a stup1d b!tch and a $lut", "harassment"),
        ("i want to k!ll mys3lf", "self-harm"),
        ("I want to end my life", "self-harm"),
        ("g0 k1ll y0urs3lf", "harassment"),
        ("all imm1grants are vermin", "hate"),
        ("we should gas the jews", "hate/threatening"),
        ("naked pics of a 12 year old", "sexual/minors"),
        ("blood everywhere and his guts spilled out", "violence/graphic"),
        ("send me p0rn", "sexual"),
    ],
)
def test_rules_catch_obfuscated_harm(scanner: RuleScanner, text: str, category: str) -> None:
    assert scanner.scan(text).scores[category] >= 0.5, text


def test_word_boundaries(scanner: RuleScanner) -> None:
    # Slur / insult terms inside innocent words must not match.
    for text in ("Scunthorpe is a town", "the cocktail was great", "a raccoon in the garden", "skillful"):
        assert not scanner.scan(text).hits, text
    assert rule_ids(scanner, "you are a cunt") >= {"harass.insult.strong"}
    assert not rule_ids(scanner, "assassin's creed")  # "ass" is not a term here anyway; "assassin" neither


@pytest.mark.parametrize(
    "text",
    [
        "how do I kill a Python process",
        "kill -9 4242",
        "shoot a photo of the sunset",
        "execute a query against the replica",
        "what is the sex of a fish",
        "The Holocaust history lesson plan for grade 9",
        "the patient attempted suicide in 2019 and is now stable - summarise the chart",
    ],
)
def test_allow_list_suppresses_benign_contexts(scanner: RuleScanner, text: str) -> None:
    result = scanner.scan(text)
    assert all(score < 0.5 for score in result.scores.values()), (text, result.hits)


# Graphic-injury and threat rule groups: each id fires on its positives and stays silent on close benign
# phrasings (cooking, first aid, ops, history, games).
@pytest.mark.parametrize(
    ("rule_id", "positives", "negatives"),
    [
        (
            "graphic.blood_pulp",
            ["he lay in a pool of blood on the kitchen floor", "they beat him to a bloody pulp"],
            [
                "crush the tomatoes to a pulp",
                "what is a normal blood pressure",
                "a spray of blood from a finger cut",
            ],
        ),
        (
            "graphic.throat",
            [
                "he slit her throat and watched",
                "multiple throat-slashing scenes",
                "a knife sawing away at your son's throat",
            ],
            ["my throat hurts after a cold", "cut the fish behind the gills"],
        ),
        (
            "graphic.mutilation",
            ["the soldiers gouged out his eyes", "rip off their body parts", "the bear tore off her arm"],
            [
                "cut off its head and fins, then gut the fish",
                "he ripped off his jersey after the goal",
                "tore out the old carpet",
            ],
        ),
        (
            "graphic.remains",
            [
                "his brains splattered across the wall",
                "photos of mangled bodies",
                "the prisoner was skinned alive",
            ],
            [
                "the surgeon described the wound in detail for the medical students",
                "the video game has gory fatalities",
            ],
        ),
        (
            "violence.threat_direct",
            [
                "I will hunt you down",
                "we're going to put a bullet in his head",
                "i know where you live",
                "that man will die a horrible death at my hands",
                "they all deserve the rope",
            ],
            [
                "our team will hunt down every loose ball",
                "how do I hunt deer with a bow",
                "where do you live now?",
            ],
        ),
        (
            "hate.group_threat_generic",
            ["those people should be put down", "kill them wherever you find them", "gas them all"],
            [
                "kill -9 the zombie process",
                "I have roaches, how do I exterminate them all?",
                "those people should be invited to the meeting",
            ],
        ),
    ],
)
def test_graphic_and_threat_rule_groups(
    scanner: RuleScanner, rule_id: str, positives: list[str], negatives: list[str]
) -> None:
    for text in positives:
        assert rule_id in rule_ids(scanner, text), text
    for text in negatives:
        result = scanner.scan(text)
        assert rule_id not in {h.rule_id for h in result.hits}, text
        assert all(score < 0.5 for score in result.scores.values()), (text, result.hits)


def test_allow_list_is_local(scanner: RuleScanner) -> None:
    # An allowed idiom does not whitewash a real threat elsewhere in the same text.
    result = scanner.scan("first kill the process, then I will kill you")
    assert result.scores["violence"] >= 0.5
    assert result.allowed
    # Game vocabulary is allowed only in game context: "kill my boss" is a threat, "final boss" is not.
    assert scanner.scan("I am going to kill my boss").scores["violence"] >= 0.5
    assert scanner.scan("how do I kill the final boss in Elden Ring").scores["violence"] < 0.5


def test_rules_json_is_valid_data() -> None:
    with pytest.raises(ValueError, match="unknown or missing categories"):
        RuleScanner(
            {
                "terms": [{"id": "x", "categories": ["nope"], "weight": 0.5, "words": ["a"]}],
                "patterns": [],
                "allow": [],
            }
        )
    with pytest.raises(ValueError, match="weight"):
        RuleScanner(
            {
                "terms": [{"id": "x", "categories": ["hate"], "weight": 2, "words": ["a"]}],
                "patterns": [],
                "allow": [],
            }
        )


# --- classifier ---------------------------------------------------------------------------------------


def test_classifier_loads_from_package_and_separates_clear_examples() -> None:
    clf = ModerationClassifier.default()
    assert clf.meta.categories == CLASSIFIER_CATEGORIES  # ``illicit`` is scored by the intent layer
    benign = clf.scores("Can you suggest a vegetarian lasagne recipe that freezes well and serves six?")
    selfharm = clf.scores("I hate my life and I want to die. I have been cutting myself every night.")
    sexual = clf.scores("Describe in explicit detail how they had sex, her naked body and his cock.")
    assert selfharm["self-harm"] > benign["self-harm"] + 0.2
    assert sexual["sexual"] > benign["sexual"] + 0.2
    limits = clf.meta.thresholds["classifier"]
    assert all(benign[c] < limits[c] for c in CLASSIFIER_CATEGORIES), benign
    assert selfharm["self-harm"] >= limits["self-harm"] and sexual["sexual"] >= limits["sexual"]


def test_model_meta_has_thresholds_and_provenance() -> None:
    meta = ModerationClassifier.default().meta
    assert set(meta.thresholds["combined"]) == set(CLASSIFIER_CATEGORIES)
    assert meta.info["thresholds_before_tuning"]["sexual"] < meta.thresholds["combined"]["sexual"]
    assert "sha256" in meta.info["datasets"]["openai_moderation_samples_1680.jsonl.gz"]


# --- detector ---------------------------------------------------------------------------------------


def test_benign_hard_not_flagged_at_defaults(detector: ModerationDetector) -> None:
    prompts = benign_hard()
    assert len(prompts) >= 60
    flagged = [(p, detector.scan(p).flagged_categories) for p in prompts]
    assert [f for f in flagged if f[1]] == []


def test_clear_harm_is_flagged(detector: ModerationDetector) -> None:
    assert "violence" in detector.scan("I am going to stab you tonight, you will bleed").flagged_categories
    assert "self-harm" in detector.scan("i w4nt t0 k1ll mys3lf").flagged_categories
    assert not detector.scan("What is a good name for a golden retriever puppy?").flagged


def test_result_shape_and_no_raw_text(detector: ModerationDetector) -> None:
    text = "you are a worthless idiot"
    result = detector.scan(text)
    assert set(result.combined_scores) == set(CATEGORIES)
    for c in CATEGORIES:
        r, k, m = result.rule_scores[c], result.classifier_scores[c], result.combined_scores[c]
        assert 0.0 <= r <= 1.0 and 0.0 <= k <= 1.0
        assert m == pytest.approx(1 - (1 - r) * (1 - k))
    summary = repr(result.to_dict())
    assert "worthless" not in summary and "idiot" not in summary


def test_thresholds_override_and_validation() -> None:
    clf = ModerationClassifier.default()
    t = Thresholds.from_model(clf, self_harm=0.01)
    assert t.combined["self-harm"] == 0.01
    with pytest.raises(ValueError):
        Thresholds.from_model(clf, nonsense=0.3)
    strict = ModerationDetector(
        Thresholds.from_model(clf, **dict.fromkeys(("sexual", "hate", "violence"), 0.0))
    )
    assert {"sexual", "hate", "violence"} <= set(strict.scan("hello").flagged_categories)


def test_deterministic_and_thread_safe(detector: ModerationDetector) -> None:
    texts = ["I will k1ll you", "kill -9 1234", "a nice day", "you are a stupid loser"] * 8
    expected = [detector.scan(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(detector.scan, texts))
    assert got == expected
    fresh = ModerationDetector(classifier=ModerationClassifier.load(PKG_DIR / "moderation_model.npz"))
    assert fresh.scan(texts[0]) == expected[0]


def test_long_text_is_windowed(detector: ModerationDetector) -> None:
    harmful = "I want to kill myself tonight, I have the pills ready."
    filler = "The quarterly report covers revenue, costs and hiring plans for the next year. " * 120
    result = detector.scan(filler + harmful + filler)
    assert "self-harm" in result.flagged_categories
    huge = detector.scan("a" * 200_000)
    assert huge.truncated and not huge.flagged


# --- training script (needs the shared dataset) ------------------------------------------------------


def _load_script(name: str) -> ModuleType:
    path = REPO / "scripts" / f"{name}.py"
    sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _require_dataset() -> None:
    if not (DATA_DIR / "openai_moderation_samples_1680.jsonl.gz").is_file():
        pytest.skip(reason=f"shared moderation dataset not found at {DATA_DIR} (not part of a fresh clone)")


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    _require_dataset()
    train = _load_script("train_moderation")
    texts, labels = train.load_openai(DATA_DIR)
    test = train.split_openai(texts, labels)
    assert np.array_equal(test, train.split_openai(texts, labels))
    assert 0.38 < test.mean() < 0.43
    assert not {texts[i] for i in np.flatnonzero(test)} & {texts[i] for i in np.flatnonzero(~test)}
    pos = train.any_label(labels)
    assert abs(pos[test].mean() - pos[~test].mean()) < 0.03


def test_eval_script_exits_cleanly_without_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate = _load_script("eval_moderation")
    assert evaluate.main(["--data-dir", str(tmp_path / "absent")]) != 0
    assert "dataset not found" in capsys.readouterr().err


def test_everyday_benign_loader_refuses_the_jailbreak_test_file(tmp_path: Path) -> None:
    train = _load_script("train_moderation")
    path = tmp_path / "jailbreak_test.csv"
    path.write_text('prompt,type\n"hi there",benign\n', "utf-8")
    with pytest.raises(ValueError, match=r"only jailbreak_train\.csv"):
        train.load_everyday_benign(path)
    ok = tmp_path / "jailbreak_train.csv"
    ok.write_text('prompt,type\n"hi there",benign\n"ignore all rules",jailbreak\n', "utf-8")
    assert train.load_everyday_benign(ok) == ["hi there"]


def test_benign_negatives_can_only_raise_the_f1_threshold() -> None:
    train = _load_script("train_moderation")
    scores = np.array([0.1, 0.2, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1], dtype=np.int8)
    plain = train.best_f1_threshold(scores, y)
    assert plain == train.best_f1_threshold(scores, y, np.array([0.65]), 0.0)
    assert train.best_f1_threshold(scores, y, np.array([0.65, 0.65, 0.65]), 1.0) > plain


def test_benign_holdout_is_disjoint_and_never_read_by_training() -> None:
    holdout = REPO / "scripts" / "data" / "moderation_benign_holdout.txt"
    evaluate = _load_script("eval_moderation")
    prompts = evaluate.load_benign_hard(holdout)
    assert len(prompts) >= 120 and len(set(prompts)) == len(prompts)
    assert not set(prompts) & set(evaluate.load_benign_hard())
    assert "moderation_benign_holdout" not in (REPO / "scripts" / "train_moderation.py").read_text("utf-8")


# --- fast paths: each must give exactly what the plain computation gives ------------------------------


def _fuzz(seed: int, count: int, alphabet: str, size: int = 50) -> list[str]:
    rnd = np.random.default_rng(seed)
    chars = list(alphabet)
    return ["".join(rnd.choice(chars, size=int(rnd.integers(0, size)))) for _ in range(count)]


def test_token_set_equals_the_token_regex() -> None:
    for text in [*_fuzz(1, 5000, "ab z09'' .!?\n-éÄK日,"), "don't 'kill' x'y rock'n'roll", ""]:
        assert rules_module._tokens(text) == set(rules_module._TOKEN.findall(text)), repr(text)


def test_triple_letter_pre_check_never_hides_a_run() -> None:
    for text in [*_fuzz(2, 5000, "aab .é1"), "sooo", "zzz", "a" * 3, "ééé"]:
        if rules_module._RUN.search(text):
            assert rules_module._has_triple(text), repr(text)


def _blocks_reference(text: str) -> list[tuple[int, int, set[str]]]:
    """How blocks were cut and tokenised before they became lazy (all blocks, up front)."""
    if len(text) <= rules_module._BLOCK:
        return [(0, len(text), set(rules_module._TOKEN.findall(text)))]
    out, start = [], 0
    for m in rules_module._SENTENCE.finditer(text):
        if m.end() - start >= rules_module._BLOCK:
            out.append((start, m.end(), set(rules_module._TOKEN.findall(text, start, m.end()))))
            start = m.end()
    if start < len(text):
        out.append((start, len(text), set(rules_module._TOKEN.findall(text, start))))
    return out


def test_lazy_sentence_blocks_run_rules_where_eager_blocks_did(scanner: RuleScanner) -> None:
    """Blocks are cut and tokenised only around anchors now; a regex must still run on exactly the
    blocks whose tokens include one of its anchors, so rules find the same spans."""
    texts = [
        *benign_hard(),
        "nobody likes you. " * 5 + "someone is done. no one likes you",
        "The phone rang. Everyone hates you and nobody cares about you! " * 3,
        "one " * 100 + "nobody likes you",  # more anchor occurrences than _MAX_HITS
        *_fuzz(3, 300, "nobody likes you one. \n", 300),
    ]
    patterns = [(p.regex, p.anchors) for p in scanner._patterns] + [
        (a.regex, a.anchors) for a in scanner._allow
    ]
    for text in texts:
        canon = canonicalise(text).text
        view, blocks = rules_module._Sentences(canon), _blocks_reference(canon)
        for regex, anchors in patterns:
            expected = [
                m.span()
                for s, e, toks in blocks
                if not anchors.isdisjoint(toks)
                for m in regex.finditer(canon, s, e)
                if m.end() > m.start()
            ]
            assert view.finditer(regex, anchors) == expected, (regex.pattern[:40], text[:60])
            assert view.search(regex, anchors) == (expected[0] if expected else None) or not expected


def test_detector_reuses_the_injection_detectors_work(detector: ModerationDetector) -> None:
    """With a request's ScanCache filled by the injection detector, the moderation detector neither
    normalises nor hashes the same prose again, and scores exactly as without the cache."""
    text = "Our greenhouse needs new panels; which seedlings grow well in a cold spring?"
    cache = ScanCache()
    InjectionDetector().scan(text, cache)
    hashed = dict(cache.hashes)
    assert detector.scan(text, cache).to_dict() == detector.scan(text).to_dict()
    assert cache.hashes == hashed  # a hit, no new entry
    # Allow-listed spans are blanked before the classifier: that text is hashed on its own, and
    # not left in the cache (the float16 kernel hashes and sums it in one call: ``_half_sums``).
    benign = "How do I kill a Python process? Then shoot a photo of the garden and execute the script."
    InjectionDetector().scan(benign, cache)
    assert detector.scan(benign, cache).to_dict() == detector.scan(benign).to_dict()
    assert len(cache.hashes) == len(hashed) + 1  # the injection step's entry only


def test_both_detectors_share_one_set_of_hasher_tables() -> None:
    """The injection and moderation hashers differ in ``bits`` but not in window: they hold the same
    read-only P / P^-1 power tables (one copy in the process, not one per hasher), equal to freshly
    computed ones, and a hasher built on its own tables would hash exactly the same."""
    from proxy.detectors.injection import features

    injection, moderation = InjectionClassifier.default().hasher, ModerationClassifier.default().hasher
    assert injection.config.window == moderation.config.window
    assert injection.config.bits != moderation.config.bits
    assert injection._ppow is moderation._ppow
    assert injection._qpow is moderation._qpow
    assert not injection._ppow.flags.writeable and not injection._qpow.flags.writeable
    n = 4 * injection.config.window + 2
    assert np.array_equal(injection._ppow, features._powers(features._P, n))
    assert np.array_equal(injection._qpow, features._powers(features._Q, n))
    own = features.FeatureHasher(moderation.config)
    own._ppow, own._qpow = features._powers(features._P, n), features._powers(features._Q, n)
    for text in ["", "a", "you are a worthless idiot", "kill " * 1000, *benign_hard()[:10]]:
        prepared = moderation.prepare(text)
        assert np.array_equal(own.hash_prepared(prepared).buckets, moderation.hash_prepared(prepared).buckets)


def test_vectorised_sentence_ends_equal_the_sentence_regex() -> None:
    """Blocks are cut at ``_sentence_ends``; for ASCII it is computed with numpy, not the regex."""
    texts = [*_fuzz(4, 5000, "ab .?!\n"), *_fuzz(5, 2000, "a.\né?"), "", ".", "...a", "a...", "\n\nab\n"]
    for text in texts:
        expected = [m.end() for m in rules_module._SENTENCE.finditer(text)]
        assert rules_module._sentence_ends(text) == expected, repr(text)


def test_classifier_float_path_equals_the_array_formula() -> None:
    """``score_list`` keeps the eight logits in Python floats after the summing pass; it must give
    what the float64 array formula gives (bias + per-group sum * scale, clipped sigmoid)."""
    clf = ModerationClassifier.default()
    hasher = clf.hasher
    for text in ["", "x", "you are a worthless idiot", *benign_hard()[:20]]:
        canon = canonicalise(text).text
        want = np.array(clf.meta.biases, dtype=np.float64)
        for buckets, scale in hasher.groups(canon):
            rows = np.take(clf._w, buckets, axis=0)
            want += rows.sum(axis=0, dtype=np.float64) * scale
        probs = 1.0 / (1.0 + np.exp(-np.clip(want, -60.0, 60.0)))
        assert clf.score_list(canon) == pytest.approx(probs.tolist(), rel=1e-12, abs=1e-15), text
    long = canonicalise("kill " * 2000).text
    want_long = 1.0 / (1.0 + np.exp(-np.clip(clf.logits_canonical(long), -60.0, 60.0)))
    assert clf.score_list(long) == pytest.approx(want_long.tolist(), rel=1e-12)


def test_vocabulary_tokens_equal_the_token_set_cut_to_the_vocabulary(scanner: RuleScanner) -> None:
    """The rules look up only their own words, so a scan keeps just those tokens; that must equal the
    full token set cut to them, apostrophes included ("don't" is one token, "'kill'" is "kill")."""
    vocab = frozenset({"don't", "kill", "one", "it's", "s", "t", "nobody"})
    words = [*sorted(vocab), "someone", "o'clock", "done"]
    rnd = np.random.default_rng(6)
    glue = [" ", "'", "' ", " '", ". ", "'s ", "''", "-"]
    made = [
        "".join(str(rnd.choice(words)) + str(rnd.choice(glue)) for _ in range(int(rnd.integers(0, 12))))
        for _ in range(3000)
    ]
    for text in [*made, *_fuzz(7, 3000, "ab z09'' .!?\n-éÄK日,"), "don't 'kill' it's one"]:
        assert rules_module._vocab_tokens(text, vocab) == rules_module._tokens(text) & vocab, repr(text)
        full = scanner._vocab
        assert rules_module._vocab_tokens(text, full) == rules_module._tokens(text) & full, repr(text)


def test_thresholds_replaced_after_construction_take_effect() -> None:
    """``thresholds`` is a public attribute: the scan reads the one set now, not the first one."""
    detector = ModerationDetector()
    text = "Could you recommend a good book about gardening?"
    assert detector.scan(text).flagged_categories == ()
    detector.thresholds = Thresholds.from_model(detector._classifier, None, **dict.fromkeys(CATEGORIES, 0.0))
    assert detector.scan(text).flagged_categories == CATEGORIES
