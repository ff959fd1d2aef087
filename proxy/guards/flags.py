"""The ``x-sidecar-flags`` response header: which guards flagged (rather than blocked) a request.

Every guard with a ``flag`` action adds its name once; the header is a comma-separated set in the
order the guards flagged. In shadow mode the chain drops the header with the step's other effects,
so a guard calls this unconditionally.
"""

from __future__ import annotations

from proxy.chain import RequestContext

FLAGS_HEADER = "x-sidecar-flags"


def add_flag(ctx: RequestContext, name: str) -> None:
    """Add ``name`` to the request's flags header (once)."""
    existing = ctx.response_headers.get(FLAGS_HEADER)
    if not existing:
        ctx.response_headers[FLAGS_HEADER] = name
    elif name not in existing.split(","):
        ctx.response_headers[FLAGS_HEADER] = f"{existing},{name}"
