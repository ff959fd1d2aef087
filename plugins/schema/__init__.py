"""``schema``: validated JSON outputs and tool calls, with a bounded repair (issue #7).

One module per role: ``config`` (settings), ``plugin`` (request side and acting on verdicts),
``contracts`` (policy schema files, compiled once per revision), ``limits`` (request-side limits),
``repair`` (the upstream wrapper that re-asks), ``stream`` (the stream filter).
"""

from plugins.schema.config import PolicyContract, RequestLimits, SchemaConfig
from plugins.schema.plugin import SchemaPlugin

__all__ = ["PolicyContract", "RequestLimits", "SchemaConfig", "SchemaPlugin"]
