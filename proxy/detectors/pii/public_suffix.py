"""Public-suffix lookups for the e-mail and domain checks, without tldextract.

Why: the engine asked tldextract one question, "does this host have a public suffix, and what
are its registrable label and suffix", and paid ~12 MB of RSS for it (tldextract imports
requests, urllib3, charset_normalizer and filelock, then builds two suffix tries, with and
without the private domains, of which the engine uses one). This module answers the same
question over the same list: ``public_suffix_list.txt`` is, byte for byte, the snapshot
tldextract 5.4.0 bundles (``tldextract/.tld_set_snapshot``: Mozilla's Public Suffix List,
MPL-2.0, version and commit in its header; it is never fetched or updated at runtime).

The steps are tldextract's own (``lenient_netloc`` and ``TLDExtract._extract_netloc`` with
``include_psl_private_domains=False``, the setting the engine always used): only the ICANN
section counts, labels are matched lower-cased and punycode (``xn--``) labels decoded with
``idna``, wildcard rules take one more label unless an exception (``!``) names it, and the
walk stops at the first label the list does not continue with. The trie is a dict keyed by
the dotted suffix path (``"uk"``, ``"co.uk"``), each a node whose value says whether a rule
ends there. tests/unit/test_pii_public_suffix.py holds it to tldextract on every e-mail domain
of the shared datasets and on generated edge cases.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from importlib import resources
from typing import NamedTuple
from urllib.parse import scheme_chars

#: The section separator and rule pattern of tldextract's parser (``suffix_list.py``).
_PRIVATE_SECTION = "// ===BEGIN PRIVATE DOMAINS==="
_RULE = re.compile(r"^(?P<suffix>[.*!]*\w[\S]*)", re.UNICODE | re.MULTILINE)
#: The dots tldextract reads as ``.`` (ideographic, fullwidth, halfwidth ideographic full stop).
_DOT_LIKE = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_ROOT_DOTS = ".\u3002\uff0e\uff61"
_SCHEME_CHARS = frozenset(scheme_chars)
_IPV4 = re.compile(
    r"^(?:(?:[0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\.)"
    r"{3}(?:[0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])$",
    re.ASCII,
)


class HostParts(NamedTuple):
    """tldextract's ``ExtractResult`` fields the engine reads (private domains excluded)."""

    subdomain: str
    domain: str
    suffix: str

    @property
    def fqdn(self) -> str:
        """The whole host when it has a registrable label under a public suffix, else ``""``
        (tldextract's ``fqdn`` with ``is_private`` always False)."""
        if self.suffix and self.domain:
            return ".".join(i for i in (self.subdomain, self.domain, self.suffix) if i)
        return ""


@functools.cache
def _trie() -> dict[str, bool]:
    """Every node of the ICANN rules' trie, keyed by its dotted path: True where a rule ends."""
    text = resources.files(__package__).joinpath("public_suffix_list.txt").read_text("utf-8")
    public = text.partition(_PRIVATE_SECTION)[0]
    nodes: dict[str, bool] = {}
    for m in _RULE.finditer(public):
        labels = m.group("suffix").split(".")
        for i in range(len(labels) - 1, 0, -1):
            nodes.setdefault(".".join(labels[i:]), False)
        nodes[m.group("suffix")] = True
    return nodes


def _decode_punycode(label: str) -> str:
    lowered = label.lower()
    if lowered.startswith("xn--"):
        import idna  # only for punycode labels (rare): its tables cost memory

        try:
            decoded: str = idna.decode(lowered)
            return decoded
        except (UnicodeError, IndexError):
            pass
    return lowered


def _suffix_index(labels: list[str]) -> int | None:
    """The index of the first public-suffix label, or None (``suffix_index``'s first part)."""
    nodes = _trie()
    path = ""
    suffix_idx = label_idx = len(labels)
    for label in reversed(labels):
        decoded = _decode_punycode(label)
        child = decoded + "." + path if path else decoded
        end = nodes.get(child)
        if end is not None:
            label_idx -= 1
            path = child
            if end:
                suffix_idx = label_idx
            continue
        if ("*." + path if path else "*") in nodes:
            exception = ("!" + decoded + "." + path if path else "!" + decoded) in nodes
            return label_idx if exception else label_idx - 1
        break
    return None if suffix_idx == len(labels) else suffix_idx


def lenient_netloc(url: str) -> str:
    """The host of a URL-like string, case kept (tldextract's ``remote.lenient_netloc``)."""
    start = url.find("//")
    if start == 0:
        url = url[2:]
    elif start >= 2 and url[start - 1] == ":" and _SCHEME_CHARS.issuperset(url[: start - 1]):
        url = url[start + 2 :]
    authority = url.partition("/")[0].partition("?")[0].partition("#")[0]
    after_userinfo = authority.rpartition("@")[-1]
    if after_userinfo and after_userinfo[0] == "[":
        maybe_ipv6 = after_userinfo.partition("]")
        if maybe_ipv6[1] == "]":
            return f"{maybe_ipv6[0]}]"
    return after_userinfo.partition(":")[0].strip().rstrip(_ROOT_DOTS)


def _looks_like_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ipaddress.AddressValueError:
        return False
    return True


def split_host(url: str) -> HostParts:
    """Subdomain, registrable label and public suffix of ``url``'s host, as
    ``TLDExtract(...)(url)`` with the bundled snapshot and no private domains."""
    netloc = lenient_netloc(url).translate(_DOT_LIKE)
    if len(netloc) >= 4 and netloc[0] == "[" and netloc[-1] == "]" and _looks_like_ipv6(netloc[1:-1]):
        return HostParts("", netloc, "")
    labels = netloc.split(".")
    index = _suffix_index(labels)
    if index is None:
        if len(labels) == 4 and netloc[0].isdecimal() and _IPV4.fullmatch(netloc):
            return HostParts("", netloc, "")
        return HostParts(".".join(labels[:-1]), labels[-1], "")
    subdomain = ".".join(labels[: index - 1]) if index >= 2 else ""
    domain = labels[index - 1] if index > 0 else ""
    return HostParts(subdomain, domain, ".".join(labels[index:]))
