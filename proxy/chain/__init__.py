"""What a plugin needs: the plugin base classes, context, stream helpers and hold-back."""

from proxy.chain.context import PASSTHROUGH_COST, RequestContext, StateKey
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
from proxy.chain.names import (
    ROLES,
    Roles,
    UnknownName,
    check_name,
    check_names,
    check_reference,
    yaml_bool_as,
)
from proxy.chain.plugin import (
    Deps,
    Match,
    Outcome,
    Plugin,
    PluginConfig,
    Reply,
    StreamFilter,
    SurfaceHooks,
    UpstreamPolicy,
)
from proxy.chain.ports import JsonHttp
from proxy.chain.secrets import Secret
from proxy.chain.textfilter import AsyncTextBuffer, TextStreamFilter, role_only
from proxy.chain.upstream import Upstream

__all__ = [
    "PASSTHROUGH_COST",
    "ROLES",
    "AsyncTextBuffer",
    "Deps",
    "HoldBack",
    "Identity",
    "JsonHttp",
    "Match",
    "Outcome",
    "Plugin",
    "PluginConfig",
    "RegexRewriter",
    "Reply",
    "RequestContext",
    "Roles",
    "Secret",
    "StateKey",
    "StreamFilter",
    "SurfaceHooks",
    "TextBuffer",
    "TextStreamFilter",
    "UnknownName",
    "Upstream",
    "UpstreamPolicy",
    "check_name",
    "check_names",
    "check_reference",
    "keep_tail",
    "regex_safe",
    "role_only",
    "sentence_boundary",
    "until_closed",
    "yaml_bool_as",
]
