"""An example third-party plugin: append one JSON line per request to an audit file.

Install it next to the sidecar (``pip install ./examples/custom_plugin``) and use it in a
policy as ``- type: audit_log`` with ``path: /var/log/sidecar-audit.jsonl``. It shows the two
things a plugin needs: a config model with a ``Literal`` type, and the hooks it implements
(here only ``on_request`` to require a header, and ``on_complete``, which always runs).
"""

from __future__ import annotations

import json
import time
from typing import Literal

from pydantic import Field

from proxy.chain import Outcome, Plugin, PluginConfig, Reply, RequestContext
from proxy.errors import Rejected
from proxy.models import ChatRequest


class AuditLogConfig(PluginConfig):
    type: Literal["audit_log"] = "audit_log"
    path: str = Field(description="JSONL file to append to")
    require_header: str | None = Field(default=None, description="refuse requests without this header")


class AuditLogPlugin(Plugin[AuditLogConfig]):
    Config = AuditLogConfig

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        header = self.config.require_header
        if header and header not in ctx.headers:
            raise Rejected(f"Requests must carry the {header} header.", code="missing_audit_header")
        return None

    async def on_complete(self, outcome: Outcome, ctx: RequestContext) -> None:
        line = {
            "ts": time.time(),
            "request_id": ctx.request_id,
            "revision": ctx.revision,
            "route": ctx.route.value,
            "model": ctx.model,
            "tenant": ctx.tenant,
            "status": outcome.status,
            "streamed": outcome.streamed,
            "completed": outcome.completed,
            "decisions": [f"{d.plugin}:{d.action}:{d.mode}" for d in ctx.decisions],
        }
        # A short append per request; a production plugin would batch or use deps.run_cpu.
        with open(self.config.path, "a", encoding="utf-8") as f:  # noqa: ASYNC230
            f.write(json.dumps(line) + "\n")
