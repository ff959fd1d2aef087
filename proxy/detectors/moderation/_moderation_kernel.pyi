# The moderation classifier's sums from its float16 table (_moderation_kernel.c; classifier.py).
def hash_sums16(
    text: str,
    char_sizes: tuple[int, ...],
    char_salts: tuple[int, ...],
    word_unigrams: bool,
    word_bigrams: bool,
    salt_w1: int,
    salt_w2: int,
    shift: int,
    weights: object,
    bound: float,
    /,
) -> tuple[tuple[float, ...], tuple[float, ...], int, int]: ...
def sums16(
    hashes: bytes | memoryview | object,
    shift: int,
    weights: object,
    n_char: int,
    bound: float,
    /,
) -> tuple[tuple[float, ...], tuple[float, ...]]: ...
def squeeze_runs(text: str, /) -> str: ...
def ascii_scores16(
    text: str,
    char_sizes: tuple[int, ...],
    char_salts: tuple[int, ...],
    word_unigrams: bool,
    word_bigrams: bool,
    salt_w1: int,
    salt_w2: int,
    shift: int,
    weights: object,
    bound: float,
    biases: tuple[float, ...],
    char_k: int,
    word_k: int,
    window: int,
    /,
) -> list[float] | None: ...
def set_simd(enabled: bool, /) -> bool: ...
def literals_present(
    text: str, filter: bytes, buckets: tuple[tuple[str, ...], ...], /
) -> set[str] | None: ...
