"""N sidecar replicas in this process, each a real uvicorn server on loopback with its own
sidecar (its own policy load, Redis clients and state), all behind one fake upstream.

In-process rather than N ``policy-sidecar serve`` processes: the CI machine has 2 cores, and 8
processes each importing the app and building the BPE tables would dominate the test's time;
between replicas only Redis is shared, exactly as between processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.app import build_app, build_sidecar
from proxy.chain.registry import Registry
from proxy.demo.fake_upstream import fake_upstream_in_thread
from proxy.server import protocol_options
from proxy.settings import Settings
from tests.harness import serve_in_thread


@dataclass
class Replicas:
    urls: list[str]
    fake: Any

    def v1(self, i: int) -> str:
        return f"{self.urls[i % len(self.urls)]}/v1"


@contextlib.contextmanager
def replicas(tmp_path: Path, policy: str, n: int, registry: Registry | None = None) -> Iterator[Replicas]:
    """``policy``: a whole policy; ``{upstream}`` is replaced by the fake upstream's URL."""
    with fake_upstream_in_thread() as (upstream_url, fake), contextlib.ExitStack() as stack:
        urls = []
        for i in range(n):
            path = tmp_path / f"replica-{i}" / "policy.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(policy.replace("{upstream}", upstream_url))
            cfg = Settings(policy_path=path, log_requests=False)
            app = build_app(build_sidecar(cfg, registry))
            urls.append(stack.enter_context(serve_in_thread(app, **protocol_options(cfg))))
        yield Replicas(urls, fake)
