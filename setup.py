"""Build the compiled modules; everything else is in pyproject.toml.

The n-gram hashing kernel is optional: without a C compiler the install still succeeds and the
classifiers use the numpy implementation (same values, slower; ``proxy.detectors.injection.features``
logs which one is active and tests/unit/test_ngram_kernel.py says when it is missing). So is the
token piece counter: without it tiktoken encodes every text it counts (same counts, slower;
tests/unit/test_token_fast_count.py says when it is missing).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "proxy.detectors._ngram_kernel",
            ["proxy/detectors/_ngram_kernel.c"],
            depends=["proxy/detectors/ngram_hash.h"],
            optional=True,
        ),
        Extension(
            "proxy.detectors.moderation._moderation_kernel",
            ["proxy/detectors/moderation/_moderation_kernel.c"],
            depends=["proxy/detectors/ngram_hash.h"],
            optional=True,
        ),
        Extension(
            "proxy.tokens._piece_counter",
            ["proxy/tokens/_piece_counter.c"],
            optional=True,
        ),
        # The PII engine's per-character scans (capitalised words, context words): optional too,
        # the Python versions in proxy/detectors/pii give the same output (test_pii_kernel.py).
        Extension(
            "proxy.detectors.pii._pii_kernel",
            ["proxy/detectors/pii/_pii_kernel.c"],
            optional=True,
        ),
        Extension(
            "proxy.detectors.injection._injection_kernel",
            ["proxy/detectors/injection/_injection_kernel.c"],
            optional=True,
        ),
    ]
)
