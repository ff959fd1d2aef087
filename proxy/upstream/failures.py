"""Re-export: the failure classes live in ``proxy.chain.failures``.

They are the vocabulary of the upstream *wrappers* (retry, circuit breaker, fallback), which are
plugins, and plugins import nothing from ``proxy.upstream`` (the ``plugins`` import contract);
so the classification sits beside the ``Upstream`` port in the chain layer. This name stays for
code outside the plugins that still imports it from here.
"""

from proxy.chain.failures import (
    FailureClass,
    classes_as_text,
    classify_exception,
    classify_response,
    error_code,
    retry_after,
)

__all__ = [
    "FailureClass",
    "classes_as_text",
    "classify_exception",
    "classify_response",
    "error_code",
    "retry_after",
]
