"""``public_suffix.split_host`` against tldextract (the engine's check before it), field for field.

The engine's e-mail check (``bool(extract(address).fqdn)``) and its domain check
(``tuned._not_domain``: domain, suffix) now run on ``split_host``; these tests prove it gives
tldextract's subdomain, domain, suffix and fqdn on the same bundled snapshot: on every host the
shared datasets hold after an ``@`` or a ``://``, on hand-picked rule shapes of the list
(wildcards, exceptions, private domains, punycode, trailing and ideographic dots, case, IPs),
and on generated hosts built from the labels those rules use.
"""

from __future__ import annotations

import gzip
import re
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii.public_suffix import HostParts, split_host
from tests.datasets import dataset_or_skip
from tests.unit.pii_tldextract_reference import offline_tldextract

_EXTRACT = offline_tldextract()


def _reference(url: str) -> tuple[str, str, str, str]:
    r = _EXTRACT(url)
    return r.subdomain, r.domain, r.suffix, r.fqdn


def _ours(url: str) -> tuple[str, str, str, str]:
    p = split_host(url)
    return p.subdomain, p.domain, p.suffix, p.fqdn


def test_the_vendored_list_is_the_snapshot_tldextract_bundles() -> None:
    import tldextract

    bundled = Path(tldextract.__file__).with_name(".tld_set_snapshot").read_bytes()
    ours = resources.files("proxy.detectors.pii").joinpath("public_suffix_list.txt").read_bytes()
    assert ours == bundled
    assert b"Mozilla Public" in ours[:200]  # the licence header travels with it


_CASES = [
    "example.com",
    "mail.example.co.uk",
    "co.uk",
    "uk",
    "com",
    "",
    ".",
    "..",
    "a..com",
    ".com",
    "localhost",
    "example.invalid",
    "EXAMPLE.COM",
    "Mail.Example.Co.UK",
    "example.com.",
    "example.com..",
    "example\u3002com",
    "example\uff0ecom\uff61",
    # wildcards and exceptions: *.ck / !www.ck, *.kawasaki.jp / !city.kawasaki.jp, *.bd, *.np
    "ck",
    "foo.ck",
    "bar.foo.ck",
    "www.ck",
    "a.www.ck",
    "WWW.CK",
    "kawasaki.jp",
    "foo.kawasaki.jp",
    "x.foo.kawasaki.jp",
    "city.kawasaki.jp",
    "a.city.kawasaki.jp",
    "!city.kawasaki.jp",
    "*.kawasaki.jp",
    "*.ck",
    "x.*.ck",
    "bd",
    "com.bd",
    "a.com.bd",
    # private domains: not suffixes with the engine's setting
    "user.github.io",
    "github.io",
    "a.b.blogspot.com",
    "s3.amazonaws.com",
    # punycode and unicode labels
    "xn--p1ai",
    "example.xn--p1ai",
    "EXAMPLE.XN--P1AI",
    "пример.рф",
    "пример.РФ",
    "bücher.de",
    "xn--bcher-kva.de",
    "xn--zz.com",
    "xn--.com",
    "example.xn--zzzzzz",
    "example.xn--",
    "公司.cn",
    "example.ΕΛ",  # upper-case Greek: lowered per label (a final sigma lowers by its context)
    "ΑΣ.ελ",
    "ΟΔΟΣ.ΕΛ.",
    "例子.公司.cn",
    "a.xn--55qx5d.cn",
    # IPs, ports, user info, schemes, paths
    "192.168.0.1",
    "999.1.1.1",
    "1.2.3.4.com",
    "[::1]",
    "[::ffff:1.2.3.4]",
    "[::1",
    "[example.com]",
    "http://user:pw@www.example.com:8080/path?q#f",
    "//example.com/x",
    "mailto:ann@example.com",
    "ann@example.com",
    "a/b@example.com",
    "a?b@example.com",
    "a#b@example.com",
    "http://x@example.com",
    "ht-tp://example.com",
    "1http://example.org",
    "a@b@example.org",
    "example.com:80",
    " example.com ",
]


def test_rule_shapes_match_tldextract() -> None:
    ours = {c: _ours(c) for c in _CASES}
    assert ours == {c: _reference(c) for c in _CASES}
    # the cases cover both answers and the wildcard/exception branches
    assert {bool(v[3]) for v in ours.values()} == {True, False}
    assert split_host("foo.kawasaki.jp") == HostParts("", "", "foo.kawasaki.jp")
    assert split_host("a.city.kawasaki.jp") == HostParts("a", "city", "kawasaki.jp")


#: labels of the list's rule shapes (wildcard parents, exceptions, private domains, punycode)
#: and ordinary ones, in any case
_LABEL = st.one_of(
    st.sampled_from(
        [
            "com",
            "co",
            "uk",
            "jp",
            "kawasaki",
            "city",
            "ck",
            "www",
            "bd",
            "io",
            "github",
            "xn--p1ai",
            "рф",
            "公司",
            "cn",
            "xn--zz",
            "*",
            "!www",
            "",
            "example",
            "1",
            "255",
            "de",
            "blogspot",
        ]
    ),
    st.text(alphabet="abcXYZé019-_*!\u3002", min_size=1, max_size=6),
)
_HOSTS = st.builds(
    lambda prefix, labels, upper, tail: (
        prefix + ".".join(labels).upper() * upper + ".".join(labels) * (not upper) + tail
    ),
    st.sampled_from(["", "ann@", "http://", "//", "a/b@", "x:y@"]),
    st.lists(_LABEL, min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from(["", ".", ":80", "/path", "?q", "#f", "\u3002", ".."]),
)


@settings(max_examples=3000, deadline=None)
@given(_HOSTS)
def test_generated_hosts_match_tldextract(url: str) -> None:
    assert _ours(url) == _reference(url)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=30))
def test_any_text_matches_tldextract(url: str) -> None:
    assert _ours(url) == _reference(url)


_HOST_IN_TEXT = re.compile(r"@([^\s\"'<>,;()\\]+)|://([^\s\"'<>,;()\\/]+)")


def _dataset_hosts() -> set[str]:
    root = dataset_or_skip("pii").parent
    hosts: set[str] = set()
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path.name.startswith("LICENSE"):
            continue
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8", "replace")
        hosts.update(m.group(1) or m.group(2) for m in _HOST_IN_TEXT.finditer(text))
    return hosts


def test_every_dataset_host_matches_tldextract() -> None:
    """Every host of the shared datasets (after ``@`` or ``://``), alone and as an address."""
    hosts = _dataset_hosts()
    assert len(hosts) > 1000
    mismatched = [h for h in hosts if _ours(h) != _reference(h) or _ours("a@" + h) != _reference("a@" + h)]
    assert mismatched == []
    assert sum(bool(split_host(h).fqdn) for h in hosts) > 100  # real domains among them


def test_the_engine_no_longer_imports_tldextract() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from proxy.detectors.pii import PiiEngine; PiiEngine('off', ()); "
        "print('tldextract' in sys.modules, 'requests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize("host", ["example.com", "x.kawasaki.jp"])
def test_lookups_are_cached_per_process(host: str) -> None:
    """The list is parsed once (a pure function of the bundled file)."""
    from proxy.detectors.pii import public_suffix

    public_suffix._trie()
    assert public_suffix._trie.cache_info().currsize == 1
    assert split_host(host).suffix
