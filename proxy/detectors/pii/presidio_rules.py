"""Presidio's English pattern recognisers as data: regexes, scores, context words, checksums.

Vendored from presidio-analyzer 2.2.366 (MIT licence, Copyright (c) Microsoft Corporation):
``predefined_recognizers/{generic,country_specific/us,country_specific/uk}/*_recognizer.py``.

Why vendored: the pattern engine only ever used these recognisers' *data* (patterns, scores,
context) and their ``validate_result`` / ``invalidate_result`` checks, but importing them
imports ``presidio_analyzer``, whose package ``__init__`` loads its NLP engines: spaCy, and
torch + transformers when they are installed. A ``pii`` step with ``ner: off`` paid ~60 MB
(spaCy alone) to ~430 MB (with torch) of RSS and seconds of start-up for code it never ran.
Here they cost a few hundred KB. ``tests/unit/test_pii_vendored.py`` compares every entry and
every check with presidio's own on the shared PII datasets and hypothesis-generated strings
(when presidio is installed), so an upgrade that changes presidio's rules is noticed.

Order matters: ``RECOGNIZERS`` is in the order of presidio's registry (hits are reported, and
ties resolved, in rule order).
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256

import regex

from proxy.detectors.pii.iban_formats import REGEX_PER_COUNTRY

#: the presidio-analyzer release these rules were copied from
PRESIDIO_VERSION = "2.2.366"


@dataclass(frozen=True, slots=True)
class Recognizer:
    """One recogniser: its entity type, (pattern name, regex, score) triples and context words;
    ``validate``: True (score 1), False (drop) or None; ``invalidate``: True drops the match."""

    entity_type: str
    patterns: tuple[tuple[str, str, float], ...]
    context: tuple[str, ...]
    validate: Callable[[str], bool | None] | None = None
    invalidate: Callable[[str], bool | None] | None = None


def _sanitize(text: str) -> str:
    """presidio's ``sanitize_value`` with the default replacement pairs: no dashes, no spaces."""
    return text.replace("-", "").replace(" ", "")


def _digits_of(n: str) -> list[int]:
    return [int(dig) for dig in str(n)]


def credit_card_valid(pattern_text: str) -> bool:
    """Luhn checksum (``CreditCardRecognizer.validate_result``)."""
    digits = _digits_of(_sanitize(pattern_text))
    odd_digits = digits[-1::-2]
    even_digits = digits[-2::-2]
    checksum = sum(odd_digits)
    for d in even_digits:
        checksum += sum(_digits_of(str(d * 2)))
    return checksum % 10 == 0


def ssn_invalid(pattern_text: str) -> bool:
    """Mixed delimiters, one repeated digit, zero groups, unissued areas, published samples."""
    delimiters = {c for c in pattern_text if c in (".", "-", " ")}
    if len(delimiters) > 1:
        return True
    only_digits = "".join(c for c in pattern_text if c.isdigit())
    if all(only_digits[0] == c for c in only_digits):
        return True
    if only_digits[3:5] == "00" or only_digits[5:] == "0000":
        return True
    if only_digits[:3] in ("000", "666"):
        return True
    return only_digits in ("123456789", "987654320", "078051120")


def nhs_valid(pattern_text: str) -> bool:
    """NHS number mod-11 checksum (``NhsRecognizer.validate_result``)."""
    text = _sanitize(pattern_text)
    total = sum([int(c) * multiplier for c, multiplier in zip(text, reversed(range(11)), strict=False)])
    return total % 11 == 0


_BASE58 = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3


def _decode_base58(bc: bytes) -> bytes:
    origlen = len(bc)
    bc = bc.lstrip(_BASE58[0:1])
    n = 0
    for char in bc:
        n = n * 58 + _BASE58.index(char)
    return n.to_bytes(origlen - len(bc) + (n.bit_length() + 7) // 8, "big")


def _bech32_polymod(values: list[int]) -> int:
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


def _bech32_valid(bech: str) -> bool:
    """``CryptoRecognizer.validate_bech32_address``: a Bech32 or Bech32m checksum holds."""
    if any(ord(x) < 33 or ord(x) > 126 for x in bech) or (bech.lower() != bech and bech.upper() != bech):
        return False
    bech = bech.lower()
    pos = bech.rfind("1")
    if pos < 1 or pos + 7 > len(bech) or len(bech) > 90:
        return False
    if not all(x in _BECH32_CHARSET for x in bech[pos + 1 :]):
        return False
    hrp = bech[:pos]
    data = [_BECH32_CHARSET.find(x) for x in bech[pos + 1 :]]
    expanded = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]
    return _bech32_polymod(expanded + data) in (1, _BECH32M_CONST)


def crypto_valid(pattern_text: str) -> bool:
    """Bitcoin address checksum: base58check for 1/3 addresses, Bech32(m) for bc1."""
    if pattern_text.startswith("1") or pattern_text.startswith("3"):
        try:
            bcbytes = _decode_base58(str.encode(pattern_text))
        except ValueError:
            return False
        checksum = sha256(sha256(bcbytes[:-4]).digest()).digest()[:4]
        return bcbytes[-4:] == checksum
    if pattern_text.startswith("bc1"):
        return _bech32_valid(pattern_text)
    return False


_IBAN_LETTERS: dict[int, str] = {ord(d): str(i) for i, d in enumerate(string.digits + string.ascii_uppercase)}


def _iban_format(iban: str) -> bool:
    country_regex = REGEX_PER_COUNTRY.get(iban[:2], "")
    flags = regex.DOTALL | regex.MULTILINE
    return bool(country_regex) and regex.match(country_regex, iban, flags=flags) is not None


def iban_valid(pattern_text: str) -> bool | None:
    """mod-97 check digits, then the country's format (None: valid only once upper-cased)."""
    try:
        text = _sanitize(pattern_text)
        transformed = (text[:2] + "00" + text[4:]).upper()
        number = (transformed[4:] + transformed[:4]).translate(_IBAN_LETTERS)
        if f"{98 - (int(number) % 97):0>2}" != text[2:4]:
            return False
    except ValueError:
        return False
    if _iban_format(text):
        return True
    if _iban_format(text.upper()):
        return None
    return False


def ip_invalid(pattern_text: str) -> bool:
    """Not an address or interface ``ipaddress`` accepts."""
    try:
        ipaddress.ip_interface(pattern_text)
    except ValueError:
        return True
    return False


def medical_license_valid(pattern_text: str) -> bool:
    """DEA number checksum (``MedicalLicenseRecognizer.validate_result``)."""
    digits = _digits_of(_sanitize(pattern_text)[2:])
    checksum = digits.pop()
    even_digits = digits[-1::-2]
    odd_digits = digits[-2::-2]
    checksum *= -1
    checksum += 2 * sum(even_digits) + sum(odd_digits)
    return checksum % 10 == 0


_MAC_SEPARATORS = re.compile(r"[:\-.]")
_MAC_HEX = re.compile(r"[0-9A-Fa-f]{12}")


def mac_invalid(pattern_text: str) -> bool:
    """Not 12 hex digits, or the broadcast / all-zero address."""
    cleaned = _MAC_SEPARATORS.sub("", pattern_text)
    if _MAC_HEX.fullmatch(cleaned) is None:
        return True
    return cleaned.upper() in ("FFFFFFFFFFFF", "000000000000")


_NIL_UUID = "00000000-0000-0000-0000-000000000000"
_UUID_VERSIONS = frozenset("12345678")
_UUID_VARIANTS = frozenset("89ab")


def uuid_invalid(pattern_text: str) -> bool:
    """The nil UUID, or an RFC 4122/9562 version or variant nibble out of range."""
    if pattern_text.lower() == _NIL_UUID:
        return True
    groups = pattern_text.split("-")
    if len(groups) != 5 or any(not g for g in groups):
        return True
    if groups[2][0].lower() not in _UUID_VERSIONS:
        return True
    return groups[3][0].lower() not in _UUID_VARIANTS


_IP_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_V4 = rf"(?:{_IP_OCTET}\.){{3}}{_IP_OCTET}"
_H = "[0-9A-Fa-f]{1,4}"
_V6_PREFIX = r"(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?"
_MONTHS = "(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
_DAY = "([1-9]|0[1-9]|[1-2][0-9]|3[0-1])"
_MONTH = "([1-9]|0[1-9]|1[0-2])"
_ISO = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T[0-2]\d:[0-5]\d"
_TZ = r"([+-][0-2]\d:[0-5]\d|Z)"

_CARD_CONTEXT = (
    "credit", "card", "visa", "mastercard", "cc", "amex", "discover", "jcb", "diners", "maestro",
    "instapayment",
)  # fmt: skip
_IPV4_CIDR = r"(?:/(?:[0-2]?\d|3[0-2]))?"

RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        "CREDIT_CARD",
        (
            (
                "All Credit Cards (weak)",
                r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))[- ]?(\d{3,4})[- ]?"
                r"(\d{3,4})[- ]?(\d{3,5})\b",
                0.3,
            ),
        ),
        _CARD_CONTEXT,
        validate=credit_card_valid,
    ),
    Recognizer(
        "US_BANK_NUMBER",
        (("Bank Account (weak)", r"\b[0-9]{8,17}\b", 0.05),),
        ("check", "account", "account#", "acct", "bank", "save", "debit"),
    ),
    Recognizer(
        "US_DRIVER_LICENSE",
        (
            (
                "Driver License - Alphanumeric (weak)",
                r"\b([A-Z][0-9]{3,6}|[A-Z][0-9]{5,9}|[A-Z][0-9]{6,8}|[A-Z][0-9]{4,8}|[A-Z][0-9]{9,11}"
                r"|[A-Z]{1,2}[0-9]{5,6}|H[0-9]{8}|V[0-9]{6}|X[0-9]{8}|A-Z]{2}[0-9]{2,5}|[A-Z]{2}[0-9]{3,7}"
                r"|[0-9]{2}[A-Z]{3}[0-9]{5,6}|[A-Z][0-9]{13,14}|[A-Z][0-9]{18}|[A-Z][0-9]{6}R|[A-Z][0-9]{9}"
                r"|[A-Z][0-9]{1,12}|[0-9]{9}[A-Z]|[A-Z]{2}[0-9]{6}[A-Z]|[0-9]{8}[A-Z]{2}|[0-9]{3}[A-Z]{2}[0-9]{4}"
                r"|[A-Z][0-9][A-Z][0-9][A-Z]|[0-9]{7,8}[A-Z])\b",
                0.3,
            ),
            ("Driver License - Digits (very weak)", r"\b([0-9]{6,14}|[0-9]{16})\b", 0.01),
        ),
        ("driver", "license", "permit", "lic", "identification", "dls", "cdls", "lic#", "driving"),
    ),
    Recognizer(
        "US_ITIN",
        (
            (
                "Itin (very weak)",
                r"\b9\d{2}[- ](5\d|6[0-5]|7\d|8[0-8]|9([0-2]|[4-9]))\d{4}\b"
                r"|\b9\d{2}(5\d|6[0-5]|7\d|8[0-8]|9([0-2]|[4-9]))[- ]\d{4}\b",
                0.05,
            ),
            ("Itin (weak)", r"\b9\d{2}(5\d|6[0-5]|7\d|8[0-8]|9([0-2]|[4-9]))\d{4}\b", 0.3),
            ("Itin (medium)", r"\b9\d{2}[- ](5\d|6[0-5]|7\d|8[0-8]|9([0-2]|[4-9]))[- ]\d{4}\b", 0.5),
        ),
        ("individual", "taxpayer", "itin", "tax", "payer", "taxid", "tin"),
    ),
    Recognizer(
        "US_PASSPORT",
        (
            ("Passport (very weak)", r"(\b[0-9]{9}\b)", 0.05),
            ("Passport Next Generation (very weak)", r"(\b[A-Z][0-9]{8}\b)", 0.1),
        ),
        ("us", "united", "states", "passport", "passport#", "travel", "document"),
    ),
    Recognizer(
        "US_SSN",
        (
            ("SSN1 (very weak)", r"\b([0-9]{5})-([0-9]{4})\b", 0.05),
            ("SSN2 (very weak)", r"\b([0-9]{3})-([0-9]{6})\b", 0.05),
            ("SSN3 (very weak)", r"\b(([0-9]{3})-([0-9]{2})-([0-9]{4}))\b", 0.05),
            ("SSN4 (very weak)", r"\b[0-9]{9}\b", 0.05),
            ("SSN5 (medium)", r"\b([0-9]{3})[- .]([0-9]{2})[- .]([0-9]{4})\b", 0.5),
        ),
        ("social", "security", "ssn", "ssns", "ssid"),
        invalidate=ssn_invalid,
    ),
    Recognizer(
        "UK_NHS",
        (("NHS (medium)", r"\b([0-9]{3})[- ]?([0-9]{3})[- ]?([0-9]{4})\b", 0.5),),
        ("national health service", "nhs", "health services authority", "health authority"),
        validate=nhs_valid,
    ),
    Recognizer(
        "CRYPTO",
        (("Crypto (Medium)", r"(bc1|[13])[a-zA-HJ-NP-Z0-9]{25,59}", 0.5),),
        ("wallet", "btc", "bitcoin", "crypto"),
        validate=crypto_valid,
    ),
    Recognizer(
        "DATE_TIME",
        (
            (
                "Datetime (yyyy-mm-ddThh:mm[:ss[.f]] with timezone)",
                rf"\b(?:({_ISO}:[0-5]\d\.\d+{_TZ})|({_ISO}:[0-5]\d{_TZ})|({_ISO}{_TZ}))\b",
                0.8,
            ),
            ("mm/dd/yyyy or mm/dd/yy", rf"\b({_MONTH}/{_DAY}/(\d{{4}}|\d{{2}}))\b", 0.6),
            ("dd/mm/yyyy or dd/mm/yy", rf"\b({_DAY}/{_MONTH}/(\d{{4}}|\d{{2}}))\b", 0.6),
            ("yyyy/mm/dd", rf"\b(\d{{4}}/{_MONTH}/{_DAY})\b", 0.6),
            ("mm-dd-yyyy", rf"\b({_MONTH}-{_DAY}-\d{{4}})\b", 0.6),
            ("dd-mm-yyyy", rf"\b({_DAY}-{_MONTH}-\d{{4}})\b", 0.6),
            ("yyyy-mm-dd", rf"\b(\d{{4}}-{_MONTH}-{_DAY})\b", 0.6),
            ("dd.mm.yyyy or dd.mm.yy", rf"\b({_DAY}\.{_MONTH}\.(\d{{4}}|\d{{2}}))\b", 0.6),
            ("dd-MMM-yyyy or dd-MMM-yy", rf"\b({_DAY}-{_MONTHS}-(\d{{4}}|\d{{2}}))\b", 0.6),
            ("MMM-yyyy or MMM-yy", rf"\b({_MONTHS}-(\d{{4}}|\d{{2}}))\b", 0.6),
            ("dd-MMM or dd-MMM", rf"\b({_DAY}-{_MONTHS})\b", 0.6),
            ("mm/yyyy or m/yyyy", rf"\b({_MONTH}/\d{{4}})\b", 0.2),
            ("mm/yy or m/yy", rf"\b({_MONTH}/\d{{2}})\b", 0.1),
        ),
        ("date", "birthday"),
    ),
    Recognizer(
        "IBAN_CODE",
        (
            (
                "IBAN Generic",
                r"(?<![A-Z0-9])([A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]{4}){2,6})((?:[ -]?[A-Z0-9]{4})?)"
                r"((?:[ -]?[A-Z0-9]{1,3})?)(?![A-Z0-9])",
                0.5,
            ),
        ),
        ("iban", "bank", "transaction"),
        validate=iban_valid,
    ),
    Recognizer(
        "IP_ADDRESS",
        (
            (
                "IPv4_mapped",
                rf"(?<![\w:])::(?:ffff(?::0{{1,4}})?:)?{_V4}{_V6_PREFIX}\b",
                0.6,
            ),
            (
                "IPv4_embedded",
                rf"(?<![\w:])(?:(?:{_H}:){{1,5}}:(?:{_H}:){{0,4}}|(?:{_H}:){{6}}){_V4}{_V6_PREFIX}\b",
                0.6,
            ),
            ("IPv4", rf"\b{_IP_OCTET}\.{_IP_OCTET}\.{_IP_OCTET}\.{_IP_OCTET}{_IPV4_CIDR}\b", 0.6),
            (
                "IPv6",
                rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:|:(?::{_H}){{1,7}}|(?:{_H}:){{1,6}}:{_H}"
                rf"|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}"
                rf"|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}|{_H}:(?::{_H}){{1,6}}|:(?::{_H}){{1,6}})"
                rf"(?:%[0-9a-zA-Z]+)?{_V6_PREFIX}(?![\w:]|\.\d)",
                0.6,
            ),
            ("IPv6_unspecified", rf"(?<![\w:])::{_V6_PREFIX}(?![\w:])", 0.1),
        ),
        ("ip", "ipv4", "ipv6"),
        invalidate=ip_invalid,
    ),
    Recognizer(
        "MEDICAL_LICENSE",
        (
            (
                "USA DEA Certificate Number (weak)",
                r"[abcdefghjklmprstuxABCDEFGHJKLMPRSTUX]{1}[a-zA-Z]{1}\d{7}"
                r"|[abcdefghjklmprstuxABCDEFGHJKLMPRSTUX]{1}9\d{7}",
                0.4,
            ),
        ),
        ("medical", "certificate", "DEA"),
        validate=medical_license_valid,
    ),
    Recognizer(
        "MAC_ADDRESS",
        (
            ("MAC_COLON_OR_HYPHEN", r"\b[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}\b", 0.6),
            ("MAC_CISCO_DOT", r"\b[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\b", 0.6),
        ),
        ("mac", "mac address", "hardware address", "physical address", "ethernet"),
        invalidate=mac_invalid,
    ),
    Recognizer(
        "UUID",
        (
            (
                "UUID (hyphenated)",
                r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b",
                0.5,
            ),
        ),
        ("uuid", "guid", "unique identifier"),
        invalidate=uuid_invalid,
    ),
)

#: presidio's email pattern; its check (a registered domain) is the engine's ``public_suffix``
#: lookup (tldextract's reading of the host, over its vendored snapshot)
EMAIL = Recognizer(
    "EMAIL_ADDRESS",
    (
        (
            "Email (Medium)",
            r"\b((([!#$%&'*+\-/=?^_`{|}~\w])|([!#$%&'*+\-/=?^_`{|}~\w][!#$%&'*+\-/=?^_`{|}~\.\w]{0,}"
            r"[!#$%&'*+\-/=?^_`{|}~\w]))[@]\w+(?:-+\w+)*(?:\.\w+(?:-+\w+)*)+)\b",
            0.5,
        ),
    ),
    ("email",),
)
