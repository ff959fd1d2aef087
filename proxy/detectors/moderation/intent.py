# ruff: noqa: RUF001, E501 -- regex data: curly quotes are matched on purpose, alternations are not wrapped mid-word
"""Harmful-request *intent* phrases: a request frame around a harmful act, figurative uses excluded.

Why, next to the n-gram intent model: n-grams learned on one benchmark's phrasing do not carry to
another's (leave-one-source-out recall on AILuminate or HarmBench stays near 0.1-0.2 at 1% FPR),
while a harmful request nearly always says *what* it wants done ("poison", "launder", "make it look
like an accident", "get rid of my neighbour") inside a request frame ("how can I", "steps to",
"help me", "what is the best way to"); a threat ("I am going to kill you") is not a request for help
and is left to the content categories. A phrase fires only with both, and never when the act is a
known figurative or technical use ("kill time", "kill the process", "shoot a photo", "blow up an
image", "execute the script", "a murder mystery", "in the game"). Euphemisms for killing or
disappearing a person count as acts. English only: the n-gram model, trained on MultiJail and
red-instruct, covers the other languages it saw.

Inside a stated fiction ("in my novel", "in a role-playing game") the phrases stay silent: CoCoNot's
look-alikes are mostly such requests; a harmful request wrapped in a story is left to the n-gram model.
Scare-quoted words ("'kill' my presentation") are figurative.

Scores: frame + act 0.85, frame + euphemism 0.85, act with a victim or evasion cue and no frame 0.6
(the n-gram model's score joins by noisy-OR in ``detector.py``). Matched on lower-cased text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable
from dataclasses import dataclass

from .. import multiscan
from ..injection.literals import LiteralIndex

_FRAME = re.compile(
    r"\b(?:how (?:do|can|could|would|should|might|did) (?:i|we|one|you|someone|people)|how to|"
    r"(?:best|easiest|quickest|fastest|safest|cheapest|most effective|simplest|surest) way(?:s)? to|ways? to|"
    r"steps? (?:to|for)|tips (?:for|on|to)|guide (?:to|for|on)|tutorial|instructions (?:for|on|to)|"
    r"teach me|show me|tell me how|help me|explain how|write (?:a|an|me)|create (?:a|an)|give me|"
    r"what (?:is|are|would be) the (?:best|easiest|most|quickest|right)|where (?:can|do|could) i "
    r"(?:buy|get|find|hire|order)|can you (?:help|tell|explain|give|show|write)|"
    r"i (?:want|need|would like) (?:you )?to (?:know|learn|find out) how|what should i (?:use|do|say|put)|"
    r"is there (?:a|any) way to|what(?:'s| is) a good way to|develop (?:a|an)|design (?:a|an)|provide)\b"
)
_ACT = re.compile(
    r"\b(?:kill(?:ing)?|murder\w*|poison\w*|strangl\w*|suffocat\w*|stab(?:bing)?|assassinat\w*|kidnap\w*|"
    r"abduct\w*|tortur\w*|rape|raping|molest\w*|traffic(?:k|king) (?:people|women|children|girls|humans|drugs)|"
    r"launder\w*|counterfeit\w*|forg(?:e|ing) (?:a |an )?(?:signature|check|cheque|document|passport|id|"
    r"prescription|money)|embezzl\w*|blackmail\w*|extort\w*|stalk\w*|dox\w*|"
    r"hack(?:ing)? into|break(?:ing)? into|steal(?:ing)?|shoplift\w*|burglar\w*|rob(?:bing)? (?:a|the|someone)|"
    r"arson|set fire to|burn down|bomb|pipe bomb|explosives?|detonat\w*|nerve agent|sarin|ricin|anthrax|"
    r"bioweapon\w*|chemical weapon\w*|(?:make|cook|synthesi[sz]e|produce|manufacture|sell|smuggle|grow) "
    r"(?:some |my own )?(?:meth(?:amphetamine)?|cocaine|heroin|fentanyl|lsd|mdma|crack)|"
    r"ransomware|malware|keylogger|spyware|phishing|ddos|botnet|credit card (?:numbers|details|fraud)|"
    r"identity theft|steal (?:someone's |their )?identity|(?:evade|avoid|escape|outrun) (?:the )?"
    r"(?:police|cops|taxes|detection|law enforcement|security)|untraceable|without (?:getting|being) caught|"
    r"(?:commit|committing) suicide|kill myself|end my (?:own )?life|hurt myself|harm myself|cut myself|"
    r"self[- ]harm|overdose|starve myself|(?:make|build|3d[- ]print) (?:a |an )?(?:gun|weapon|bomb|silencer)|"
    r"ghost gun|silencer|scam\w*|fraud\w*|bribe\w*|cheat (?:on )?(?:my |the )?(?:taxes|exam|test)|"
    r"hurt (?:him|her|them|someone|my|a)|beat (?:up )?(?:him|her|them|someone|my)|"
    r"spike (?:a|her|his|someone's) drink|date rape|roofie\w*|groom(?:ing)? (?:a |the )?(?:child|kid|minor)|"
    r"child porn\w*|csam|revenge porn|non-?consensual|slur\w*|genocide|ethnic cleansing|terroris\w*|"
    r"mass shooting|school shooting|shoot (?:him|her|them|someone|people|my|a (?:person|cop|teacher))|"
    r"radicali[sz]\w*|(?:write|create|spread|generate) (?:some |a )?(?:propaganda|disinformation|fake news)|"
    r"defam\w*|impersonat\w*|"
    r"pirat(?:e|ed|ing) (?:software|movies|games)|bypass (?:the )?(?:paywall|drm|license|security|"
    r"filters?|age verification)|jailbreak (?:my|an?|the) (?:ai|chatbot|model))\b"
)
_EUPHEMISM = re.compile(
    r"\b(?:get rid of (?:my|a|the|this|that) (?:wife|husband|neighbou?r|boss|person|body|kid|child|baby|"
    r"girlfriend|boyfriend|ex|roommate|coworker|father|mother|dad|mom|witness)|make (?:him|her|them|someone|"
    r"(?:my|his|her|their|a|the) \w+) disappear|(?:permanently|forever) (?:silence|deal with|get rid of)|put (?:him|her|them|someone) "
    r"(?:to sleep|down) (?:forever|permanently|for good)|dispose of (?:a|the) body|hide (?:a|the) body|"
    r"end (?:his|her|their|someone's|a person's|my \w+'s) life|take (?:his|her|their|someone's) life|"
    r"(?:look|seem)s? like an accident|without (?:anyone|them|him|her|the police) (?:knowing|noticing|finding out)|"
    r"teach (?:him|her|them) a lesson they|so (?:he|she|they) (?:never|can't|cannot) (?:wake|talk|speak)|"
    r"never wakes? up|stop (?:him|her|them) from breathing|ruin (?:his|her|their) (?:life|reputation))\b"
)
_QUOTED = re.compile(r"['\"‘’“”]\w+['\"‘’“”]")  # a scare-quoted word ("'kill' my presentation") is figurative
_FICTION = re.compile(
    r"\b(?:in (?:a|the|my|our|your) (?:novel|story|screenplay|script|play|game|video game|role-?playing game|"
    r"rpg|campaign|book|film|movie|fantasy world)|for (?:a|my) (?:novel|story|screenplay|character)|"
    r"in (?:minecraft|fortnite|call of duty|among us|skyrim|roblox|plants vs\.? zombies|elden ring|zelda|"
    r"halo|overwatch|league of legends|valorant|cs:?go|dota)|(?:murder|mystery|detective) (?:story|mystery|novel)|"
    r"write a (?:story|poem|novel|scene|screenplay|murder mystery))\b"
)
_VICTIM = re.compile(
    r"\b(?:my (?:wife|husband|neighbou?r|boss|ex|roommate|coworker|teacher|sister|brother|mother|father|"
    r"kid|child|girlfriend|boyfriend)|someone|a person|people|him|her|them|a child|children|kids)\b"
)
_FIGURATIVE = re.compile(
    r"\b(?:kill(?:ing)? (?:time|the (?:process|task|job|engine|lights|music|pain|mood|vibe|app|server|"
    r"session|thread|weeds|bacteria|germs|mold|pests?|bugs?|ants|roaches|fleas|lice)|a (?:process|task|"
    r"job|thread|zombie process|bug)|weeds|bacteria|germs|mold|pests?|ants|roaches|fleas|lice|"
    r"(?:it|them) in (?:the )?game|-9|switch|command)|"
    r"shoot(?:ing)? (?:a |the |some )?(?:photos?|video|film|pictures?|scenes?|hoops|the breeze|portraits?|"
    r"landscapes?|in manual|raw|an? email|a message)|blow(?:ing)? up (?:a |an |the )?(?:photo|image|picture|"
    r"balloons?|print)|bomb(?:ed)? (?:a|the|my) (?:test|exam|interview|audition)|photo ?bomb|bath bomb|"
    r"(?:murder|crime|detective) (?:mystery|mysteries|novel|story|show|podcast)|execut\w* (?:a |the )?"
    r"(?:plan|script|command|query|code|program|function|trade|order)|terminat\w* (?:a |the )?(?:process|"
    r"contract|instance|lease|employee)|hack(?:ing)? (?:together|day|a \w+ recipe)|life ?hacks?|"
    r"steal(?:ing)? the show|(?:drug|medication) (?:interaction|test|store|side effects?)|"
    r"in (?:a |the |my )?(?:game|video game|minecraft|fortnite|skyrim|roblox|novel|story|movie|film|"
    r"screenplay|tabletop|d&d|dungeons)|(?:fraud|scam|phishing) (?:prevention|detection|awareness|alert)|"
    r"(?:detect|spot|avoid|prevent|report|recogni[sz]e|protect (?:myself|me|against)) (?:a |an |the )?"
    r"(?:scams?|fraud|phishing|malware|identity theft|ransomware)|"
    r"(?:history|historical|causes|effects) of|break(?:ing)? into (?:the |a )?\w+ (?:industry|market|field|"
    r"business|career|scene|world)|kill(?:ing)? (?:a |the |my |off )?(?:character|viruses?|presentation|"
    r"interview|performance|audition|look|outfit|game|competition)|'kill'|\"kill\"|"
    r"(?:bomb|explosion|burst) of (?:flavou?rs?|colou?rs?|taste)|flavou?r (?:bomb|explosion)|"
    r"kidnap(?:ping)? (?:the |my |their |your )?(?:audience|attention|readers?|viewers?)|"
    r"report(?:ing)? (?:a |some |the )?(?:fraud\w*|scams?|identity theft|stolen)|"
    r"fraud\w* (?:activity|charges?|transactions?|way)|about (?:a |the |some )?fraud\w*|"
    r"hurt (?:my|your|the) (?:credit|chances|score|rating)|kill(?:ing)? (?:microbes|viruses|cancer cells|cells)|"
    r"kill(?:ing|ed|s)? (?:-9 |all |off |the |a |an )?(?:[\w-]+ ){0,3}?(?:process(?:es)?|threads?|jobs?|branch(?:es)?|"
    r"containers?|pods?|apps?|tasks?|sessions?|servers?|tabs?|daemons?|workers?)|"
    r"kill(?:ing)? (?:a |the )?(?:lobster|crab|fish|chicken|mosquito(?:es)?|fruit flies|flies|wasps?|spiders?)|"
    r"cut myself (?:while|on|shaving|cooking|chopping|by accident|accidentally)|kill ?streak|"
    r"(?:antibiotics|bleach|soap|heat|uv light|alcohol) kills?)\b"
)


_SENTENCE_END = re.compile(r"[.!?\n]")
_REACH = 120  # characters after a request frame in which the act must be named
_SHORT = 400  # phrases without a request frame count only in request-sized texts


# A necessary condition, checked first in one vectorised pass (``literals.py``): every act and
# euphemism pattern contains one of these stems, so text without any (most prose) costs ~40 µs
# instead of the ~400 µs the patterns take per 2 KB.
_STEMS = LiteralIndex(
    (
        "kill",
        "murder",
        "poison",
        "strangl",
        "suffocat",
        "stab",
        "assassin",
        "kidnap",
        "abduct",
        "tortur",
        "rape",
        "raping",
        "molest",
        "traffic",
        "launder",
        "counterfeit",
        "forg",
        "embezzl",
        "blackmail",
        "extort",
        "stalk",
        "dox",
        "hack",
        "break",
        "steal",
        "shoplift",
        "burglar",
        "rob ",
        "robbing",
        "arson",
        "fire",
        "burn",
        "bomb",
        "explosi",
        "detonat",
        "nerve",
        "sarin",
        "ricin",
        "anthrax",
        "weapon",
        "meth",
        "cocaine",
        "heroin",
        "fentanyl",
        "lsd",
        "mdma",
        "crack",
        "ransomware",
        "malware",
        "keylogger",
        "spyware",
        "phishing",
        "ddos",
        "botnet",
        "credit card",
        "identity",
        "evade",
        "avoid",
        "escape",
        "outrun",
        "untraceable",
        "caught",
        "suicide",
        "myself",
        "my life",
        "my own life",
        "hurt",
        "harm",
        "overdose",
        "gun",
        "silencer",
        "scam",
        "fraud",
        "bribe",
        "cheat",
        "beat",
        "spike",
        "roofie",
        "groom",
        "porn",
        "csam",
        "consensual",
        "slur",
        "genocide",
        "cleansing",
        "terroris",
        "shoot",
        "radicali",
        "propaganda",
        "disinformation",
        "fake news",
        "defam",
        "impersonat",
        "pirat",
        "bypass",
        "jailbreak",
        "rid of",
        "disappear",
        "silence",
        "deal with",
        "put ",
        "dispose",
        "body",
        "life",
        "accident",
        "knowing",
        "noticing",
        "finding out",
        "lesson",
        "wake",
        "talk",
        "speak",
        "breathing",
        "ruin",
    )
)


@dataclass(frozen=True, slots=True)
class IntentHit:
    score: float
    reason: str
    span: tuple[int, int]


def literal(text: str) -> str:
    """``text`` lower-cased with its figurative and scare-quoted uses of violent words blanked: what
    the intent phrases read, and what the n-gram intent model scores ("how do I kill a Python process"
    is then "how do i  python process")."""
    low = text.lower()
    gate = _literal_gate()
    may = gate.matching(low)  # None: not gated, run both
    if may is not None:  # a pattern the gate did not admit always runs
        may = may | (frozenset({"figurative", "quoted"}) - gate.keys)
    if may is None or "figurative" in may:
        low = _FIGURATIVE.sub(_blank, low)
        may = None  # blanking changed the text: the pre-scan no longer speaks for it
    if may is None or "quoted" in may:
        low = _QUOTED.sub(_blank, low)
    return low


def _blank(m: re.Match[str]) -> str:
    return " " * len(m.group())


@functools.cache
def _literal_gate() -> multiscan.Gate:
    """One Hyperscan pass that says whether ``_FIGURATIVE`` / ``_QUOTED`` can match at all.

    Why: ``_FIGURATIVE`` is a ~150-branch alternation that Python's ``re`` tries at every word
    boundary (~160 µs per 2 KB, four times per moderated exchange) and it almost never matches;
    the gate skips the ``sub`` when it cannot, so the output is unchanged (``sub`` without a match
    returns the text as is). A pattern the gate did not admit is always run."""
    return multiscan.gate([("figurative", _FIGURATIVE), ("quoted", _QUOTED)])


_PHRASES = frozenset({"fiction", "frame"})


@functools.cache
def _phrase_gate() -> multiscan.Gate:
    """One Hyperscan pass that says whether ``_FICTION`` and ``_FRAME`` can match a whole text.

    Why: the stems are common words ("life", "put ", "talk", "harm", "avoid"), so most prose passes
    ``_STEMS``, and then two ~100-branch alternations walked the text with ``re`` (~120 µs per
    2 KB). Exact, like ``_literal_gate``: a pattern the pass does not report cannot match, so its
    search is skipped (it would find nothing); one it reports, or did not admit, runs as before.
    The act and euphemism searches stay ungated: those in the short tail after a frame (a tail cut
    mid-word can match where the whole text does not), and those over the whole text, which only
    request-sized texts (``_SHORT``) need."""
    return multiscan.gate([("fiction", _FICTION), ("frame", _FRAME)])


def _may_match(text: str) -> frozenset[Hashable]:
    """The gated patterns that may match ``text``: both when the text is not gated."""
    gate = _phrase_gate()
    found = gate.matching(text)
    return _PHRASES if found is None else found | (_PHRASES - gate.keys)


def intent_phrase(text: str, blanked: str | None = None) -> IntentHit | None:
    """The strongest intent phrase in ``text`` (None: none). ``blanked``: ``literal(text)`` if known."""
    if len(text) > 8192:
        text = text[:4096] + " " + text[-4096:]
        blanked = None
    lowered = text.lower()
    if not _STEMS.present(lowered):
        return None
    may = _may_match(lowered)
    # fiction is left to the n-gram model (and the injection plugin)
    if "fiction" in may and _FICTION.search(lowered):
        return None
    low = blanked if blanked is not None else literal(text)
    if low != lowered:  # figurative uses were blanked: the pass no longer speaks for this text
        may = _may_match(low)
    # A request names the act right after its frame, in the same sentence ("how can I ... poison");
    # a story that says "decided" early and "kill" three lines later is not one.
    for frame in _FRAME.finditer(low) if "frame" in may else ():
        tail = _SENTENCE_END.split(low[frame.end() : frame.end() + _REACH], maxsplit=1)[0]
        for rx, reason in ((_EUPHEMISM, "request+euphemism"), (_ACT, "request")):
            m = rx.search(tail)
            if m is not None:
                span = (frame.end() + m.start(), frame.end() + m.end())
                return IntentHit(0.85, reason, span)
    if len(low) > _SHORT:  # phrases without a request frame count only in request-sized texts
        return None
    euphemism = _EUPHEMISM.search(low)
    if euphemism is not None:
        return IntentHit(0.6, "euphemism", euphemism.span())
    act = _ACT.search(low)
    if act is not None and _VICTIM.search(low[max(0, act.start() - 40) : act.end() + 40]):
        return IntentHit(0.6, "act+victim", act.span())
    return None
