"""The guard toolkit: the parts every content guard (injection, moderation, PII, schema) shares.

One implementation each, so a fix lands once:

* ``AwaitedWindow`` (``windows``): stream text held in windows and released only after an async
  check or scan; it plugs into the per-choice ``TextStreamFilter`` (``proxy.chain.textfilter``,
  the one stream loop, re-exported here with ``role_only``, the OpenAI ``delta.role`` rule).
* ``RemoteModel`` (``remote``): the judge / remote-endpoint client. Its HTTP comes from the
  runtime through ``Deps.json_http`` (a port declared in ``proxy.chain.ports``), so plugins never
  import ``proxy.upstream``.
* ``add_flag`` (``flags``): the ``x-sidecar-flags`` header merge.

Classifier model loading and long-text windowing live one layer lower, in
``proxy.detectors.linear_model``, because the detectors (below this package) are what use them.

Layering: ``plugins`` > ``proxy.guards`` > ``proxy.detectors`` > ``proxy.chain``; this package sits
below ``proxy.upstream`` in the import contract, so it cannot reach the HTTP client directly.
"""

from proxy.chain.textfilter import AsyncTextBuffer, TextStreamFilter, role_only
from proxy.guards.flags import FLAGS_HEADER, add_flag
from proxy.guards.remote import JUDGE_TEXT_CHARS, RemoteModel
from proxy.guards.windows import AwaitedWindow, Settle

__all__ = [
    "FLAGS_HEADER",
    "JUDGE_TEXT_CHARS",
    "AsyncTextBuffer",
    "AwaitedWindow",
    "RemoteModel",
    "Settle",
    "TextStreamFilter",
    "add_flag",
    "role_only",
]
