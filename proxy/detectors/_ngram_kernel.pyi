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
def has_repeat(prepared: str, min_repeats: int, max_unit: int, /) -> bool: ...
