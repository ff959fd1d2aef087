"""What a plugin needs: the plugin base classes, context, stream helpers and hold-back."""

from proxy.chain.context import RequestContext, StateKey
from proxy.chain.holdback import HoldBack, keep_tail, regex_safe, sentence_boundary, until_closed
from proxy.chain.plugin import (
    Deps,
    Match,
    Outcome,
    Plugin,
    PluginConfig,
    Reply,
    StreamFilter,
    UpstreamPolicy,
)
from proxy.chain.textfilter import TextStreamFilter

__all__ = [
    "Deps",
    "HoldBack",
    "Match",
    "Outcome",
    "Plugin",
    "PluginConfig",
    "Reply",
    "RequestContext",
    "StateKey",
    "StreamFilter",
    "TextStreamFilter",
    "UpstreamPolicy",
    "keep_tail",
    "regex_safe",
    "sentence_boundary",
    "until_closed",
]
