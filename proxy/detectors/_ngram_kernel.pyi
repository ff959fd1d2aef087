def hash_ngrams(
    text: str,
    char_sizes: tuple[int, ...],
    char_salts: tuple[int, ...],
    word_unigrams: bool,
    word_bigrams: bool,
    salt_w1: int,
    salt_w2: int,
    /,
) -> tuple[bytes, bytes, bytes, int, int]: ...
def bucket_sums(
    hashes: bytes | memoryview | object,
    shift: int,
    weights: object,
    n_char: int,
    /,
) -> tuple[tuple[float, ...], tuple[float, ...]]: ...

# Moderation block (proxy.detectors.moderation.rules; references in rules.py).
def leet_fold(text: str, /) -> tuple[str, str | None] | None: ...
def has_letter_triple(text: str, /) -> bool: ...
def hash_bucket_sums(
    text: str,
    char_sizes: tuple[int, ...],
    char_salts: tuple[int, ...],
    word_unigrams: bool,
    word_bigrams: bool,
    salt_w1: int,
    salt_w2: int,
    shift: int,
    weights: object,
    /,
) -> tuple[tuple[float, ...], tuple[float, ...], int, int]: ...
def vocab_tokens(text: str, filter: bytes, vocab: frozenset[str], /) -> set[str]: ...
def squeeze_runs(text: str, /) -> str: ...
def has_repeat(prepared: str, min_repeats: int, max_unit: int, /) -> bool: ...
