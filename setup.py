"""Build the one compiled module; everything else is in pyproject.toml.

The n-gram hashing kernel is optional: without a C compiler the install still succeeds and the
classifiers use the numpy implementation (same values, slower; ``proxy.detectors.injection.features``
logs which one is active and tests/unit/test_ngram_kernel.py says when it is missing).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "proxy.detectors._ngram_kernel",
            ["proxy/detectors/_ngram_kernel.c"],
            optional=True,
        ),
        Extension(
            "proxy.detectors.injection._injection_kernel",
            ["proxy/detectors/injection/_injection_kernel.c"],
            optional=True,
        ),
    ]
)
