"""What a plugin needs: the plugin base classes, context, stream helpers and hold-back."""

from proxy.chain.context import RequestContext, StateKey
from proxy.chain.holdback import (
    HoldBack,
    RegexRewriter,
    TextBuffer,
    keep_tail,
    regex_safe,
    sentence_boundary,
    until_closed,
)
from proxy.chain.identity import Identity
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
from proxy.chain.secrets import Secret
from proxy.chain.textfilter import TextStreamFilter
from proxy.chain.upstream import Upstream

__all__ = [
    "Deps",
    "HoldBack",
    "Identity",
    "Match",
    "Outcome",
    "Plugin",
    "PluginConfig",
    "RegexRewriter",
    "Reply",
    "RequestContext",
    "Secret",
    "StateKey",
    "StreamFilter",
    "TextBuffer",
    "TextStreamFilter",
    "Upstream",
    "UpstreamPolicy",
    "keep_tail",
    "regex_safe",
    "sentence_boundary",
    "until_closed",
]
