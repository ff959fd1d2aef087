"""Offline token counting and model prices: groundwork for rate and cost budgets.

Everything here works without network access: the tokenizer rank files ship in ``bpe/``.
Counts are pre-flight *estimates* (exact for plain text on OpenAI models, approximate for
tools, images and non-OpenAI models); reconcile with the provider's ``usage`` afterwards.
"""

from proxy.tokens.counting import (
    DEFAULT_COMPLETION_RESERVE,
    count_chat_request,
    count_completion_reserve,
    count_text,
)
from proxy.tokens.encodings import (
    DEFAULT_ENCODING,
    BpeFileError,
    build_encoding,
    encoding_for_model,
    encoding_name_for_model,
    get_encoding,
    normalize_model,
    preload_encodings,
)
from proxy.tokens.images import image_tokens, image_url_tokens
from proxy.tokens.pricing import DEFAULT_PRICES, Price, cost_usd, price_for_model

__all__ = [
    "DEFAULT_COMPLETION_RESERVE",
    "DEFAULT_ENCODING",
    "DEFAULT_PRICES",
    "BpeFileError",
    "Price",
    "build_encoding",
    "cost_usd",
    "count_chat_request",
    "count_completion_reserve",
    "count_text",
    "encoding_for_model",
    "encoding_name_for_model",
    "get_encoding",
    "image_tokens",
    "image_url_tokens",
    "normalize_model",
    "preload_encodings",
    "price_for_model",
]
