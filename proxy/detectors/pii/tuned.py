"""Recognisers this project adds to presidio's: phone numbers without ``phonenumbers``, and more.

Each rule says why it exists. They were tuned on the *dev* half of the Presidio synthetic set
(templates with an even ``template_id``, see ``scripts/eval_pii.py``); the reported numbers are
on the other half.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from proxy.detectors.pii.gazetteer import COUNTRIES, DEMONYMS, OCCUPATIONS
from proxy.detectors.pii.names import GIVEN_NAMES
from proxy.detectors.pii.public_suffix import split_host


@dataclass(frozen=True, slots=True)
class TunedRule:
    entity_type: str
    regex: str
    score: float
    context: tuple[str, ...] = ()
    trigger: str | None = None
    validate: Callable[[str], bool | None] | None = None  # True: score 1; False: drop
    invalidate: Callable[[str], bool | None] | None = None  # True: drop (never raises a score)
    group: int = 0
    case_sensitive: bool = False
    window: Literal["text", "token"] | int = "text"
    words: tuple[str, ...] = ()  # a gazetteer instead of ``regex`` (whole words, any case)
    people: frozenset[str] = frozenset()  # given names: a ``NameGazetteer`` instead of ``regex``
    not_before: str = ""  # gazetteer only: a regex that, right after a name, vetoes it
    #: a hint for where matches start (``Rule.starts``): Hyperscan, exact, no look-arounds
    starts: str | None = None
    #: a bounded regex that matches wherever ``regex`` does (``Rule.start_check``)
    start_check: str | None = None


def _not_phone(value: str) -> bool:
    """Fewer than 7 or more than 15 digits (E.164's maximum): not a phone number."""
    n = sum(map(str.isdigit, value))  # the same count as a generator of c.isdigit(), at half the cost
    return not 7 <= n <= 15


#: Country-code TLDs that are far more often file extensions in prompts (``config.py``).
_FILE_SUFFIXES = frozenset({"py", "sh", "md", "rs", "pl", "ps", "cs", "mk", "ml", "cc", "sc", "so", "pm"})


def _not_domain(value: str) -> bool:
    """A dotted word whose last label is no public suffix (``file.txt``, ``e.g``), or a bare
    ``name.py`` (no ``www.``, no path): a file name, not a site."""
    host = value.split("/", 1)[0]
    parts = split_host(host)
    if not (parts.domain and parts.suffix):
        return True
    bare = "/" not in value and not host.lower().startswith("www")
    return bare and parts.suffix.lower() in _FILE_SUFFIXES


_STREET_WORD = (
    r"(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|square|squares|parks?|place|pl"
    r"|court|ct|terrace|terrasse|highway|hwy|gata|gatan|gade|vej|katu|tie|strasse|straße|str|u|ul|rua"
    r"|via|calle|apt|suite|unit|box|po)"
)
_STREET_EVIDENCE = re.compile(r"(?i)(?<!\w)" + _STREET_WORD + r"(?!\w)|\n")
_NAME_NUMBER = re.compile(r"^\S+ (?:\d+ )?([^\W\d_][\w'\u2019\-]*) \d")


#: "12 March 2024" is a date: a month is no street name.
_MONTHS = frozenset(
    """january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec""".split()  # noqa: SIM905 (a word list)
)


def _not_address(value: str) -> bool:
    """Number + words is an address only with a street word, a unit, several lines, or
    ``Name 25`` (house number after a capitalised street name); "founded in 1977 by three
    friends" is not, nor "2024 at 10am" (a lower-case word is no street name), nor "12 March
    2024"."""
    if _STREET_EVIDENCE.search(value) is not None:
        return False
    named = _NAME_NUMBER.search(value)
    return named is None or not named.group(1)[0].isupper() or named.group(1).lower().rstrip(".") in _MONTHS


# House-number-led addresses, then optional parts on the same line, after commas or on new
# lines: unit (Suite 12), capitalised place names, two-letter state codes, postcodes. Parts
# that start lower-case after a comma end the address (", and the corner of ...").
_W = r"[^\W\d_][\w'\u2019\-]*\.?"
_CAP = r"(?:\p{Lu}[\w'\u2019\-]*\.?)"
#: lower-case particles of place and street names ("Soto del Barco", "Avenue des Tuileries"),
#: as whole words: without ``(?!\w)`` "de" would stop the match inside "del".
_PARTICLE = (
    r"(?:de|da|do|dos|das|del|dei|della|delle|degli|di|du|des|la|le|les|los|las|el|al|of|and|e|y|i"
    r"|van|von|der|den|het|na|am|an|im|zum|zur|sur|sous|en)(?!\w)"
)
_PART = (
    r"(?:(?i:suite|apt\.?|unit|box)[ ]\d+"
    r"|" + _CAP + r"(?:[ ](?:" + _CAP + r"|" + _PARTICLE + r"|\d{3,6}(?:-\d{3,4})?"
    r"|\(\p{Lu}[^()\n]{0,30}\))){0,4}"
    r"|\d{3,6}(?:-\d{3,4})?|nan)"
)
#: lower-case words allowed inside a street line (after its first word)
_LINK = r"(?:" + _PARTICLE + r"|(?:u\.|ul\.|st\.?|str\.|street|road|avenue)(?!\w))"
#: a line may start with a list bullet (``- ``, ``* ``, ``• ``, or ``???`` where one was lost)
_BULLET = r"(?:(?:[\-*\u2022]|\?{3})[ ])?"
_SEP = (
    r"(?:[ ]*\n[ ]*"
    + _BULLET
    + r",[ ]*|[ ]*,[ ]*\n?[ ]*"
    + _BULLET
    + r"|[ ]*\n[ ]*(?:\n[ ]*)?"
    + _BULLET
    + r"|[ ])"
)
_TAIL = r"(?:" + _SEP + _PART + r"){0,7}"
#: US military mail: "PSC 1437, Box 3833\nAPO AA 66791", "USNS Bergman\nFPO AP 93757".
MILITARY = (
    r"(?i:(?<![\w.\-])(?:PSC|Unit|USNS|USNV|USS|USCGC)[ ][\w ]{1,30}?(?:,?[ ]Box[ ]\d{3,5})?"
    r"\s*[ADF]PO[ ]A[AEP][ ]\d{5})"
)
ADDRESS = (
    r"(?<![\w.\-])(?:(?:P\.O\.[ ]Box[ ]|\d{1,6}[ ](?:\d{1,6}[ ])?)"
    + _W
    + r"(?:[ ](?:"
    + _CAP
    + r"|"
    + _LINK
    + r"|\d{1,6}\.?)){0,7}"
    + _TAIL
    + ")"
)
#: What every ``ADDRESS`` match starts with: its look-behind, the house number (or P.O. Box)
#: and the first character of the street name (``_W``). Bounded, so it runs without a timeout;
#: tests/unit/test_pii_start_check.py holds it to being a prefix of ``ADDRESS``.
ADDRESS_HEAD = r"(?<![\w.\-])(?:P\.O\.[ ]Box[ ]|\d{1,6}[ ](?:\d{1,6}[ ])?)[^\W\d_]"
#: Street-name-first addresses (continental Europe, Latin America): a street prefix (Via, Rua,
#: ul., Avda., C/) or a street-suffixed word (Ziegelgasse, Sludevej, Wingertweg, Kiannonkatu),
#: then the house number, then the same optional parts as above.
_PREFIX = (
    r"(?:Via|Viale|Rua|Rue|Avenida|Avda\.|Av\.|Calle|C/|Carrer|Plaza|Praça|Largo"
    r"|ul\.|al\.|Ulica|Strada|Calea)"
)
_SUFFIXED = (
    r"\p{Lu}[\w\-]*?(?:gasse|vej|veien|vegen|vägen|väg|gade|gatan|gata|straße|strasse|str|weg|laan|straat"
    r"|katu|tie|polku|kuja|tee|braut|stræti|allee|ring|platz|plein|utca|útja)\.?"
)
_NUMBER_TAIL = r"\d{1,5}[a-zA-Z]?\b\.?" + _TAIL
ADDRESS_PREFIXED = r"(?<![\w.\-])" + _PREFIX + r"[ ](?:" + _W + r"[ ]){1,4}" + _NUMBER_TAIL
ADDRESS_SUFFIXED = r"(?<![\w.\-])" + _SUFFIXED + r"[ ](?:" + _CAP + r"[ ]){0,2}" + _NUMBER_TAIL
#: a capitalised word, then a house number: far rarer than the positions the suffix regex tries
_SUFFIX_TRIGGER = r"\p{Lu}[\w\-]{2,}\.?[ ]\d"
#: "the corner of X and Y": an address without a house number.
CORNER = r"(?i:the[ ])?(?i:corner[ ]of)[ ][^\n,.;]{2,40}?[ ]and[ ]" + _CAP + r"(?:[ ]" + _CAP + r"){0,3}"
#: An all-capitals place name after a place preposition ("I am in TROMSØ", "from KAJAANI").
CAPS_PLACE = r"(?<=\b(?:in|at|from|near|to)[ ])\p{Lu}{4,}(?:[ \-]\p{Lu}{2,}){0,3}\b(?![ ]?\d)"


def _not_luhn(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    total = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    return total % 10 != 0


_MONTH_FULL = (
    r"(?i:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan\.?|feb\.?|mar\.?|apr\.?|jun\.?|jul\.?|aug\.?|sept?\.?|oct\.?|nov\.?|dec\.?)"
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_URL_TAIL = r"(?:/[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]]|/)?"


_NAME_WORD = r"\p{Lu}[\w&'\u2019\-]*"
_ORG_NAME = r"(?:\d+[ ])?" + _NAME_WORD + r"(?:[ ](?:" + _NAME_WORD + r"|and|of|&)){0,4}"
#: Organisation names the small model misses or calls PERSON: a legal-form suffix, or a
#: "works for X" / "X is a company" cue around capitalised words.
ORG_SUFFIXED = (
    r"(?<![\w\-])" + _ORG_NAME + r"[ ](?:Inc\.?|LLC|L\.L\.C\.|Ltd\.?|Limited|Incorporated|Corporation|Corp\.?"
    r"|GmbH|AG|PLC|plc|S\.A\.|SA|Co\.|Company|Group|Holdings|Partners)(?![\w\-])"
)
#: "Jones, Mitchell and Williams": surnames joined by commas and "and" (after a work cue).
_FIRM_NAME = _NAME_WORD + r"(?:,[ ]" + _NAME_WORD + r"){1,3},?[ ](?:and|&)[ ]" + _NAME_WORD
ORG_AFTER_CUE = (
    r"(?<=\b(?i:work|works|worked|working|employed|employee|job|year|years|months|intern|internship)"
    r"[ ](?i:for|at|by|with)[ ])(?:" + _FIRM_NAME + "|" + _ORG_NAME + r")(?![\w\-])"
)
#: "The Avalara office is at ...", "the Acme headquarters": a name before an office word.
ORG_BEFORE_OFFICE = (
    r"\b(?:The|the)[ ](" + _NAME_WORD + r"(?:[ ]" + _NAME_WORD + r"){0,3})"
    r"[ ](?:office|offices|headquarters|HQ|head[ ]office|branch|team|board)\b"
)
#: "meet at Corelogic, 0896 69 Farnell Street": a name right before a street address.
ORG_BEFORE_ADDRESS = (
    r"\b(?:at|At)[ ](" + _NAME_WORD + r"(?:[ ]" + _NAME_WORD + r"){0,3}),[ ](?=\d{1,6}[ ]\d{0,6}[ ]?\p{Lu})"
)
#: An address label: a line between the addressee's line and the street line is a company
#: ("Ann Lee\nAcme Widgets\n12 Main St"); it outranks the small model, which calls most
#: two-word company names people.
ORG_ABOVE_ADDRESS = (
    r"(?m:(?<=\S[ \t]*\n)[ \t]*"
    + _BULLET
    + r"(\p{Lu}[\w&'\u2019\-]*(?:[ ]\p{Lu}[\w&'\u2019.\-]*){0,4})[ \t]*\n"
    r"[ \t]*" + _BULLET + r"(?=\d{1,6}[ ]\S|PSC[ ]|Unit[ ]\d|USNS[ ]|USS[ ]|the[ ]corner[ ]of[ ]))"
)
ORG_BEFORE_CUE = (
    r"(?<![\w\-])"
    + _ORG_NAME
    + r"(?=[ ](?:is|was)[ ](?:a|an|the)[ ](?:[\w\-]+[ ]){0,2}(?i:company|startup|start-up"
    r"|firm|agency|business|brand|bank|manufacturer|retailer|consultancy|provider|platform|corporation|employer)\b)"
)
#: Courtesy titles: the title itself is a TITLE, the capitalised words after it a PERSON.
_HONORIFIC = r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Mme|Mlle|Herr|Frau)"
HONORIFIC = r"(?<![\w.])" + _HONORIFIC + r"\.?(?=[ ]\p{Lu})"
NAME_AFTER_HONORIFIC = (
    r"(?<=(?<![\w.])" + _HONORIFIC + r"\.?[ ])\p{Lu}[\w'\u2019\-]+(?:[ ]\p{Lu}[\w'\u2019\-]+){0,2}(?![\w\-])"
)
#: API keys and tokens whose format names them (OpenAI/Anthropic sk-, AWS access key ids,
#: GitHub, GitLab, Slack, Google, Stripe) and JWTs: long enough that prose never matches.
CREDENTIAL_TOKEN = (
    r"(?<![\w\-])(?:sk-(?:ant-|proj-|svcacct-)?[A-Za-z0-9_\-]{20,200}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,100}|github_pat_[A-Za-z0-9_]{30,120}|glpat-[A-Za-z0-9_\-]{20,60}"
    r"|xox[abpors]-[A-Za-z0-9\-]{10,200}|AIza[0-9A-Za-z_\-]{35}|(?:sk|rk)_live_[A-Za-z0-9]{20,120}"
    r"|eyJ[A-Za-z0-9_\-]{8,2000}\.eyJ[A-Za-z0-9_\-]{8,4000}\.[A-Za-z0-9_\-]{8,2000})(?![\w\-])"
)
PRIVATE_KEY = (
    r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY-----(?:[\s\S]{0,8000}?-----END[A-Z ]{0,40} PRIVATE KEY-----)?"
)
#: "password: hunter2", "pwd=S3cret!": the value after the label (no spaces in it).
PASSWORD_VALUE = r"(?i:\bpass(?:word|wd|code)?[ ]*[:=][ ]*)([^\s\"'`]{4,128})"
#: One capitalised part of a name: "Lee", "Smith-Jones", and "O'Brien" / "D'Angelo" (an
#: apostrophe right after the capital, then another capital).
NAME_PART = r"\p{Lu}(?:\p{Ll}|['\u2019]\p{Lu})[\w'\u2019\-]*"
#: "Faina D. Yefremova", "Ruth R Montez": given name, middle initial, surname.
INITIAL_NAME = r"(?<![\w\-])" + NAME_PART + r"[ ]\p{Lu}\.?[ ]" + NAME_PART + r"(?![\w\-])"
#: "my name is Ann Lee", "I'm Ann Lee": two or three capitalised words after a self-introduction.
NAME_AFTER_CUE = (
    r"\b(?i:my[ ]name[ ]is|name:|i[ ]am|i'm|i\u2019m|signed|regards,|sincerely,)\s"
    r"(" + NAME_PART + r"(?:[ ]" + NAME_PART + r"){1,2})(?![\w\-])"
)
_OCCUPATION = r"(?:" + "|".join(OCCUPATIONS) + r")s?"
_TITLE_WORD = r"[\w'\u2019\-]+"
#: A job title alone on its line (a CV or signature block: "Ann Lee\nTechnical writer\n").
TITLE_LINE = r"(?im:^[ \t]*((?:" + _TITLE_WORD + r",?[ ]){0,5}" + _OCCUPATION + r")[ \t]*\.?[ \t]*$)"
#: ... or in apposition: "Ann Lee, the Technical writer, said".
TITLE_APPOSITION = r",[ ]the[ ]((?:" + _TITLE_WORD + r"[ ]){0,3}(?i:" + _OCCUPATION + r"))(?=,)"
#: Postcodes after a label ("ZIP: 94103", "Postcode: SW1A 1AA", "postal code 75534-030"); inside
#: a full address the address rule already covers them.
ZIP_AFTER_LABEL = (
    r"\b(?i:zip(?:[ ]?code)?|post(?:al)?[ ]?code|postcode|plz|cep)[ ]?[:#]?[ ]?"
    r"(\d{3,5}(?:[ \-]\d{2,4})?(?:[ ]\p{Lu}{2}(?![\w]))?|\p{Lu}{1,2}\d[\p{Lu}\d]?[ ]?\d\p{Lu}{2}"
    r"|\p{Lu}\d\p{Lu}[ ]?\d\p{Lu}\d)(?![\w\-])"
)
#: A name alone on the first line (a CV, a signature block, an address label).
FIRST_LINE_NAME = (
    r"\A[ \t]*("
    + NAME_PART
    + r"(?:[ ]{1,2}(?:\p{Lu}\.?|"
    + NAME_PART
    + r"|van|von|de|der|den|da|di|le|la)){1,3})"
    r"[ \t]*\n"
)
#: A place name after a verb of living or travelling: "originally from Mavčiče", "based in Kulusuk".
PLACE_AFTER_CUE = (
    r"\b(?:originally[ ]from|arrived[ ](?:at|in)|returned[ ]to|moved[ ]to|based[ ]in|born[ ]in"
    r"|lives[ ]in|living[ ]in|located[ ]in|live[ ]in|grew[ ]up[ ]in|travell?ed[ ]to|visiting|flew[ ]to)[ ]"
    r"(\p{Lu}\p{Ll}[\w'\u2019\-]*(?:[ ]\p{Lu}\p{Ll}[\w'\u2019\-]*){0,2})(?![\w\-])"
)
WEEKDAY = r"\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b"
ADDRESS_CONTEXT = (
    "address", "live", "lives", "lived", "located", "office", "send", "sent", "ship", "deliver",
    "moved", "meet",
)  # fmt: skip
PHONE_CONTEXT = (
    "phone", "call", "tel", "mobile", "cell", "fax", "number", "contact", "reach", "dial", "text",
    "message", "sms", "whatsapp", "desk", "answer", "ring",
)  # fmt: skip
_EXT = r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?"

TUNED_RULES: tuple[TunedRule, ...] = (
    # International and national phone formats: groups of digits joined by space, dot or dash,
    # with an optional +country code and (area) code. Without a context word the score stays
    # below the default threshold, so ordinary numbers in prose are left alone.
    TunedRule(
        "PHONE_NUMBER",
        r"(?<![\w+.\-/])(?:(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?"
        r"\d{2,7}+(?:[ .\-]\d{2,7}+){1,5}+|\d{7,15}+)" + _EXT + r"(?![\w\-/]|\.\d)",
        0.3,
        PHONE_CONTEXT,
        r"\d{2}",
        invalidate=_not_phone,
    ),
    # National numbers with a trunk prefix 0 in three or more groups (0680 298 70 63,
    # 078 8098 1119): phone-shaped enough to pass the default threshold without context.
    TunedRule(
        "PHONE_NUMBER",
        r"(?<![\w+.\-/])(?:\(0\d{1,4}\)|0\d{1,4}+)(?:[ .\-]\d{2,7}+){2,5}+" + _EXT + r"(?![\w\-/]|\.\d)",
        0.45,
        PHONE_CONTEXT,
        r"0\d",
        invalidate=_not_phone,
    ),
    TunedRule(
        "PHONE_NUMBER",
        r"(?<![\w+.\-/])\+\d{1,3}[ .\-]?(?:\(\d{1,5}\)[ .\-]?)?\d{2,7}+(?:[ .\-]\d{2,7}+){0,5}+"
        + _EXT
        + r"(?![\w\-/]|\.\d)",
        0.5,
        PHONE_CONTEXT,
        r"\+\d",
        invalidate=_not_phone,
    ),
    # US/NANP layout 212-555-0142 / (212) 555-0142: distinctive enough without a context word.
    TunedRule(
        "PHONE_NUMBER",
        r"(?<![\w+.\-/])(?:\(\d{3}\)[ ]?|\d{3}[\-. ])\d{3}[\-. ]\d{4}"
        r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w\-/]|\.\d)",
        0.5,
        PHONE_CONTEXT,
        r"\d{3}",
    ),
    # Card numbers presidio's prefix list misses (Maestro 50/56-69, JCB 2131, Mir 2200-2204,
    # newer Mastercard 2221-2720): 12-19 digits, Luhn-checked; context "card" raises them.
    TunedRule(
        "CREDIT_CARD",
        r"(?<![\w\-])(?:\d{4}[ \-]?){2,3}\d{4,7}(?![\w\-])",
        0.5,
        ("card", "credit", "debit", "visa", "mastercard", "amex", "maestro"),
        r"\d{4}",
        invalidate=_not_luhn,
    ),
    # Dates presidio has no pattern for: "12 March 2024", "March 12, 2024", and a year after
    # in/since/born/founded (spaCy's DATE would also tag "yesterday", "last spring").
    TunedRule(
        "DATE_TIME",
        r"\b(?:\d{1,2}(?:st|nd|rd|th)?[ ]"
        + _MONTH
        + r",?[ ]\d{4}|"
        + _MONTH
        + r"[ ]\d{1,2}(?:st|nd|rd|th)?,?[ ]\d{4})\b",
        0.6,
        ("date", "born", "birthday", "dob"),
        r"\d{4}",
        window=24,  # runs only around 4-digit numbers: the month alternation is costly
    ),
    TunedRule(
        "DATE_TIME",
        r"\b" + _MONTH_FULL + r"[ ,]+(?:19|20)\d{2}\b",
        0.6,
        ("date", "born", "birthday", "dob", "since", "in"),
        r"\d{4}",
        window=16,
    ),
    TunedRule(  # a date and its time are one span: "1978-04-13 12:20:39"
        "DATE_TIME",
        r"\b(?:\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}|\d{1,2}[\-/.]\d{1,2}[\-/.]\d{2,4})"
        r"[ T](?:[01]?\d|2[0-3]):[0-5]\d"
        r"(?::[0-5]\d(?:\.\d+)?)?(?:[ ]?(?i:[ap]\.?m\.?))?(?![\w:])",
        0.8,
        ("date", "time", "born", "dob", "when"),
        r"\d:\d\d",
    ),
    TunedRule(
        "DATE_TIME",
        r"(?<![\w:.])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:[ ]?(?i:[ap]\.?m\.?))?(?![\w:]|\.\d)",
        0.5,
        ("time", "at", "until", "from", "meeting", "date"),
        r"\d:\d\d",
    ),
    TunedRule(
        "DATE_TIME",
        r"(?i:\b(?:in|since|born|founded|until|year|of|from|by|a|the)[ ])((?:19|20)\d{2})\b(?![\-/.:]\d)",
        0.5,
        trigger=r"(?:19|20)\d{2}",
        group=1,
    ),
    # Ages: "aged 42", "just turned 42", "42 years old", "42 y/o" (a quasi-identifier: with a
    # place and a date it narrows a person down; HIPAA counts ages over 89 as identifiers).
    TunedRule(
        "AGE",
        r"(?i:\b(?:aged?|age[ ]of|turned|turns|turning|i[ ]am|i'm|i\u2019m)[ :]+)(\d{1,3})\b(?![.,:]\d|[ ]?%)"
        r"(?![ ](?:minutes?|hours?|days?|weeks?|months?|times?|percent|items?|of|in|on|at|and|or|to)\b)",
        0.6,
        trigger=r"(?i)(?:aged?|age of|turned|turns|turning|i am|i'm|i\u2019m)[ :]+\d",  # needs a digit
        group=1,
    ),
    TunedRule(
        "AGE",
        r"(?<![\w.,])(\d{1,3})(?i:[ \-]?(?:years?[ \-]old|years?[ ]of[ ]age|y/o|yo|yrs?[ \-]old)\b)",
        0.6,
        trigger=r"(?i)old|of age|y/?o\b",
        group=1,
    ),
    # URLs replace presidio's four 6 KB TLD alternations (1.5 ms per 2 KB each): a URL with a
    # scheme is one token; a bare domain must end in a public suffix (bundled list, offline).
    TunedRule(
        "URL", r"\b(?:https?|ftp)://[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]]", 0.6, ("url", "website", "link"), "://"
    ),
    TunedRule(
        "URL",
        r"(?<![\w@.\-])(?:www\d{0,3}\.)?(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?![\w@\-])"
        + _URL_TAIL,
        0.5,
        ("url", "website", "link", "site", "domain"),
        r"\.[A-Za-z]{2}",  # literal-led: a fast scan
        invalidate=_not_domain,
        window="token",
    ),
    # Street and postal addresses are ADDRESS (contact data, redacted by default); place names
    # alone (countries, towns) stay LOCATION (not in the default set: "capital of France").
    TunedRule(
        "ADDRESS",
        ADDRESS,
        0.9,  # above NER's 0.85: a structured address beats the model's pieces of it
        (
            "address",
            "live",
            "lives",
            "lived",
            "located",
            "office",
            "send",
            "sent",
            "ship",
            "deliver",
            "moved",
            "meet",
        ),
        r"\d",
        invalidate=_not_address,
        case_sensitive=True,
        # A match starts with "P.O. Box " or with a run of at most six digits and a space, and
        # no digit before it (the look-behind): that run's start is the leftmost start of the
        # hint's matches that end at the space, which is what Hyperscan reports.
        starts=r"\d{1,6} |P\.O\. Box ",
        # Most of those starts are a number before another number or a word in lower case
        # ("555 0127", "5079 (our"): dropped by one cheap match instead of the rule's regex
        start_check=ADDRESS_HEAD,
    ),
    # Windowed: these regexes are costly at every position, their trigger words are rare.
    TunedRule("ADDRESS", MILITARY, 0.9, ADDRESS_CONTEXT, r"[ADF]PO A[AEP] \d", window=90),
    TunedRule(
        "ADDRESS", ADDRESS_PREFIXED, 0.9, ADDRESS_CONTEXT, _PREFIX + "[ ]", case_sensitive=True, window=160
    ),
    TunedRule(
        "ADDRESS", ADDRESS_SUFFIXED, 0.9, ADDRESS_CONTEXT, _SUFFIX_TRIGGER, case_sensitive=True, window=160
    ),
    TunedRule("ADDRESS", CORNER, 0.9, ADDRESS_CONTEXT, r"(?i)corner of", case_sensitive=True),
    TunedRule("LOCATION", CAPS_PLACE, 0.6, trigger=r"\p{Lu}{4}", case_sensitive=True),
    TunedRule("LOCATION", "", 0.7, words=COUNTRIES),
    TunedRule(
        "ORGANIZATION",
        ORG_SUFFIXED,
        0.9,
        # a space first: a literal-led trigger is a fast scan (stdlib re)
        trigger=r" (?:Inc|LLC|L\.L|Ltd|Limited|Incorporated|Corporation|Corp|GmbH|AG|PLC|plc|S\.A|SA"
        r"|Co\.|Company|Group|Holdings|Partners)\b",
        case_sensitive=True,
        window=90,  # the name is at most five words before its legal form
    ),
    TunedRule(
        "ORGANIZATION", ORG_AFTER_CUE, 0.9, trigger=r"(?i)\b(?:for|at|by|with) \p{Lu}", case_sensitive=True
    ),
    TunedRule("ORGANIZATION", ORG_BEFORE_CUE, 0.9, trigger=r" (?:is|was) (?:a|an|the) ", case_sensitive=True),
    TunedRule(
        "ORGANIZATION",
        ORG_BEFORE_OFFICE,
        0.6,
        trigger="=office|headquarters|HQ|branch|team|board",
        group=1,
        case_sensitive=True,
        window=80,
    ),
    TunedRule(
        "ORGANIZATION", ORG_BEFORE_ADDRESS, 0.6, trigger=r", \d", group=1, case_sensitive=True, window=80
    ),
    TunedRule("ORGANIZATION", ORG_ABOVE_ADDRESS, 0.86, trigger="\n", group=1, case_sensitive=True),
    # Names the pattern engine can find without a model: after a courtesy title, with a middle
    # initial, after a self-introduction. NER (0.85) finds more; these agree with it.
    TunedRule(
        "TITLE",
        HONORIFIC,
        0.6,
        trigger="~mr|mrs|ms|mx|miss|dr|prof|sir|dame|mme|mlle|herr|frau",
        window=48,
        case_sensitive=True,
    ),
    TunedRule(
        "PERSON",
        NAME_AFTER_HONORIFIC,
        0.85,
        trigger="~mr|mrs|ms|mx|miss|dr|prof|sir|dame|mme|mlle|herr|frau",
        window=48,
        case_sensitive=True,
    ),
    TunedRule("PERSON", INITIAL_NAME, 0.6, trigger=r" \p{Lu}\.? \p{Lu}", case_sensitive=True, window=40),
    TunedRule(
        "PERSON",
        NAME_AFTER_CUE,
        0.6,
        trigger="=name is|name:|Name:|I am|I'm|I\u2019m|i am|i'm|igned|egards,|incerely,",
        group=1,
        case_sensitive=True,
        window=60,
    ),
    TunedRule("TITLE", TITLE_LINE, 0.6, trigger="\n", group=1),
    TunedRule("TITLE", TITLE_APPOSITION, 0.86, trigger=", the ", group=1, window=64),
    TunedRule(
        "ZIP_CODE",
        ZIP_AFTER_LABEL,
        0.8,
        trigger="=ZIP|Zip|zip|ostal|ostcode|ost code|PLZ|CEP",
        group=1,
        case_sensitive=True,
        window=40,
    ),
    TunedRule(
        "NRP", "", 0.86, words=DEMONYMS, not_before=r" (?:Republic|Republics)\b|\)"
    ),  # above NER: "Japanese" of "Japanese Border Force"
    TunedRule(
        "PERSON", FIRST_LINE_NAME, 0.6, trigger=r"\A[ \t]*\p{Lu}[^\n]{0,60}\n", group=1, case_sensitive=True
    ),
    TunedRule(
        "LOCATION",
        PLACE_AFTER_CUE,
        0.6,
        trigger="=originally from|arrived|returned to|moved to|based in|born in|lives in|living in"
        "|located in|live in|grew up in|travel|visiting|flew to",
        group=1,
        case_sensitive=True,
        window=48,
    ),
    TunedRule("DATE_TIME", WEEKDAY, 0.6, trigger=r"day\b", case_sensitive=True),
    # A known given name and a surname: "Anna Kowalska", "Lars P. Nielsen".
    TunedRule("PERSON", "", 0.6, people=GIVEN_NAMES),
    # Credentials pasted into a support conversation: API keys of well-known formats (their
    # prefixes are the trigger), JWTs, private key blocks, and "password: ..." values.
    TunedRule(
        "CREDENTIAL",
        CREDENTIAL_TOKEN,
        0.9,
        trigger="=sk-|AKIA|ASIA|ghp_|gho_|ghs_|ghu_|ghr_|github_pat_|glpat-|xox|AIza|eyJ|sk_live_|rk_live_",
        case_sensitive=True,
        window="token",
    ),
    TunedRule("CREDENTIAL", PRIVATE_KEY, 0.95, trigger="=-----BEGIN", case_sensitive=True),
    TunedRule(
        "CREDENTIAL", PASSWORD_VALUE, 0.7, trigger="(?i)pass(?:word|wd|code)?[ ]*[:=]", group=1, window=80
    ),
)
