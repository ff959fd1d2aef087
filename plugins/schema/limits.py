"""Request-side limits (``request:``): refuse a request before it costs anything, a clear 400 each."""

from __future__ import annotations

from proxy.chain import RequestContext
from proxy.chain.chain import Matcher
from proxy.errors import Rejected
from proxy.models import ChatRequest, Route

from .config import RequestLimits


def check_limits(
    limits: RequestLimits | None, models: Matcher | None, req: ChatRequest, ctx: RequestContext
) -> None:
    """Refuse (400, with a decision record) the first limit this request breaks."""
    if limits is None:
        return
    body = req.body

    def refuse(rule: str, message: str, param: str | None = None) -> Rejected:
        ctx.record(rule, "block", detail={"param": param} if param else None)
        return Rejected(message, code=rule, param=param)

    if models is not None and not models.matches(ctx):
        raise refuse("model_not_allowed", "This model is not allowed by policy.", "model")
    if limits.max_tokens is not None:
        for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            value = body.get(name)
            if isinstance(value, int) and value > limits.max_tokens:
                raise refuse("max_tokens_exceeded", f"{name} may be at most {limits.max_tokens}.", name)
    items = body.get("input" if req.route is Route.RESPONSES else "messages")
    count = len(items) if isinstance(items, list) else 1
    if limits.max_messages is not None and count > limits.max_messages:
        name = "input" if req.route is Route.RESPONSES else "messages"
        raise refuse("too_many_messages", f"At most {limits.max_messages} {name} are allowed.", name)
    tools = body.get("tools")
    if limits.max_tools is not None and isinstance(tools, list) and len(tools) > limits.max_tools:
        raise refuse("too_many_tools", f"At most {limits.max_tools} tools are allowed.", "tools")
    for name in limits.required_fields:
        if body.get(name) is None:
            raise refuse("missing_required_field", f"The field {name!r} is required by policy.", name)
