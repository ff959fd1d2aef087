"""``pii``: detect personal data, replace it before the provider sees it, restore it after.

One module per role: ``config`` (the step's settings), ``plugin`` (detection, redaction, answer
restore, output scan), ``stream`` (streamed restore and sentence scanning on the shared per-choice
filter), ``vault`` (secret, placeholder vault, conversation keys, the request's state).
"""

from plugins.pii.config import Action, EntityRule, PiiConfig
from plugins.pii.plugin import INLINE_MAX_CHARS, PiiPlugin
from plugins.pii.vault import STATE, PiiState

__all__ = ["INLINE_MAX_CHARS", "STATE", "Action", "EntityRule", "PiiConfig", "PiiPlugin", "PiiState"]
