/*
 * The n-gram hashing primitives both classifier kernels share (_ngram_kernel.c for injection and
 * moderation, moderation/_moderation_kernel.c for moderation's float16 path): one definition, so the
 * two modules cannot drift apart (their tests compare them bit for bit anyway). Header-only: each
 * module gets its own static copy; include it after <Python.h>, <stdint.h> and <string.h>, and call
 * init_word_ascii() from the module's init.
 */
#ifndef POLICY_SIDECAR_NGRAM_HASH_H
#define POLICY_SIDECAR_NGRAM_HASH_H

#define P 0x100000001B3ULL
#define M1 0xFF51AFD7ED558CCDULL
#define M2 0xC4CEB9FE1A85EC53ULL
#define BIGRAM 0x9E3779B97F4A7C15ULL
#define MAX_CHAR_SIZES 8
#define MAX_CHAR_LEN 16
/* Texts at least this long are hashed with the GIL released: other threads (the event loop, when the
 * scan runs in the CPU pool) go on meanwhile. Shorter ones keep it: releasing costs more than it frees. */
#define RELEASE_GIL_FROM 16384

static inline uint64_t mix_partial(uint64_t h) {
    h ^= h >> 33;
    h *= M1;
    h ^= h >> 33;
    h *= M2;
    return h;
}

static inline uint64_t mix_full(uint64_t h) {
    h = mix_partial(h);
    return h ^ (h >> 33);
}

static unsigned char WORD_ASCII[128];

/* Word characters: ASCII [a-z0-9_] (the text is lower-cased before it gets here) and every
 * non-ASCII code point. */
static void init_word_ascii(void) {
    memset(WORD_ASCII, 0, sizeof(WORD_ASCII));
    for (const char *c = "abcdefghijklmnopqrstuvwxyz0123456789_"; *c; c++) WORD_ASCII[(unsigned char)*c] = 1;
}

static inline int is_word(uint32_t c) { return c >= 128 ? 1 : WORD_ASCII[c]; }

static int read_u64(PyObject *obj, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Copies the code points into cp and records the word boundaries (every change of "is a word
 * character" between neighbours, with a non-word character assumed before and after the text; starts
 * and ends alternate). Returns how many boundaries. Pure C: may run without the GIL (the string is
 * immutable and the caller holds a reference). */
static Py_ssize_t read_text(int kind, const void *data, Py_ssize_t n, uint32_t *cp, Py_ssize_t *bounds) {
    Py_ssize_t n_bounds = 0;
    int prev = 0;
    for (Py_ssize_t t = 0; t < n; t++) {
        uint32_t c = PyUnicode_READ(kind, data, t);
        cp[t] = c;
        int cur = is_word(c);
        bounds[n_bounds] = t; /* kept only when it is a change: no branch to mispredict per word */
        n_bounds += cur ^ prev;
        prev = cur;
    }
    if (prev) bounds[n_bounds++] = n;
    return n_bounds;
}

/* A vectorised char n-gram pass (e.g. the moderation kernel's AVX-512 one): fills the char blocks
 * for the first starts and returns the first start left to the scalar loop. */
typedef Py_ssize_t (*char_hashes_fn)(const uint32_t *cp, Py_ssize_t n, Py_ssize_t longest,
                                     const Py_ssize_t *block_at, const uint64_t *salt_at, uint64_t *out);

/* Writes every n-gram's mixed hash into out (layout: see _ngram_kernel's hash_ngrams) and, when
 * start_at is not NULL, the word starts and ends; simd (may be NULL) hashes a first run of starts.
 * Pure C: may run without the GIL. */
static inline void fill_hashes(const uint32_t *cp, Py_ssize_t n, const Py_ssize_t *ks, const uint64_t *char_salts,
                               Py_ssize_t n_sizes, const Py_ssize_t *bounds, Py_ssize_t n_words, Py_ssize_t n_uni,
                               Py_ssize_t n_bi, uint64_t salt_w1, uint64_t salt_w2, uint64_t *out,
                               Py_ssize_t *start_at, Py_ssize_t *end_at, char_hashes_fn simd) {
    Py_ssize_t pos = 0;

    /* Char n-grams: for each start i, Horner's rule over the longest size, emitting a hash each time
     * the length reaches a requested size. Every start is independent, so the multiplications of
     * neighbouring starts overlap in the CPU (a rolling hash would chain them: ~2.5x slower). */
    Py_ssize_t block_at[MAX_CHAR_LEN + 1]; /* by n-gram length: its block's offset, or -1 */
    uint64_t salt_at[MAX_CHAR_LEN + 1];
    Py_ssize_t longest = 0;
    for (Py_ssize_t len = 0; len <= MAX_CHAR_LEN; len++) block_at[len] = -1;
    for (Py_ssize_t s = 0; s < n_sizes; s++) {
        Py_ssize_t k = ks[s];
        if (n < k) continue;
        block_at[k] = pos;
        salt_at[k] = char_salts[s];
        pos += n - k + 1;
        if (k > longest) longest = k;
    }
    Py_ssize_t first = simd != NULL && longest > 0 ? simd(cp, n, longest, block_at, salt_at, out) : 0;
    for (Py_ssize_t i = first; i < n; i++) {
        Py_ssize_t reach = n - i < longest ? n - i : longest;
        uint64_t h = 0;
        for (Py_ssize_t len = 1; len <= reach; len++) {
            h = h * P + cp[i + len - 1];
            if (block_at[len] >= 0) out[block_at[len] + i] = mix_partial(h ^ salt_at[len]);
        }
    }

    Py_ssize_t uni_pos = pos, bi_pos = pos + n_uni;
    uint64_t previous = 0;
    for (Py_ssize_t w = 0; w < n_words; w++) {
        Py_ssize_t a = bounds[2 * w], b = bounds[2 * w + 1];
        if (start_at != NULL) {
            start_at[w] = a;
            end_at[w] = b;
        }
        uint64_t h = 0;
        for (Py_ssize_t j = a; j < b; j++) h = h * P + cp[j];
        if (n_uni) out[uni_pos + w] = mix_partial(h ^ salt_w1);
        if (n_bi && w > 0) out[bi_pos + w - 1] = mix_partial((mix_full(previous) * BIGRAM + h) ^ salt_w2);
        previous = h;
    }
}

/* The hashing arguments every hashing entry point shares (_ngram_kernel's hash_ngrams and
 * hash_bucket_sums, the moderation kernel's hash_sums16 and ascii_scores16): args[0..6] = (text, char_sizes,
 * char_salts, word_unigrams, word_bigrams, salt_w1, salt_w2). Fills h; -1 with an exception set when
 * an argument is wrong (signature: the TypeError message, naming the caller). */
typedef struct {
    Py_ssize_t n_sizes;
    Py_ssize_t ks[MAX_CHAR_SIZES];
    uint64_t char_salts[MAX_CHAR_SIZES];
    int want_uni, want_bi;
    uint64_t salt_w1, salt_w2;
} HashArgs;

static int read_hash_args(PyObject *const *args, HashArgs *h, const char *signature) {
    PyObject *text = args[0], *sizes = args[1], *salts = args[2];
    if (!PyUnicode_Check(text) || !PyTuple_Check(sizes) || !PyTuple_Check(salts)) {
        PyErr_SetString(PyExc_TypeError, signature);
        return -1;
    }
    h->n_sizes = PyTuple_GET_SIZE(sizes);
    if (h->n_sizes != PyTuple_GET_SIZE(salts) || h->n_sizes > MAX_CHAR_SIZES) {
        PyErr_SetString(PyExc_ValueError, "one salt per char n-gram size, at most 8 sizes");
        return -1;
    }
    for (Py_ssize_t i = 0; i < h->n_sizes; i++) {
        h->ks[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(sizes, i));
        if (h->ks[i] == -1 && PyErr_Occurred()) return -1;
        if (h->ks[i] < 1 || h->ks[i] > MAX_CHAR_LEN) {
            PyErr_SetString(PyExc_ValueError, "char n-gram sizes must be within [1, 16]");
            return -1;
        }
        for (Py_ssize_t j = 0; j < i; j++) {
            if (h->ks[j] == h->ks[i]) {
                PyErr_SetString(PyExc_ValueError, "char n-gram sizes must be distinct");
                return -1;
            }
        }
        if (read_u64(PyTuple_GET_ITEM(salts, i), &h->char_salts[i]) < 0) return -1;
    }
    h->want_uni = PyObject_IsTrue(args[3]);
    h->want_bi = PyObject_IsTrue(args[4]);
    if (h->want_uni < 0 || h->want_bi < 0) return -1;
    if (read_u64(args[5], &h->salt_w1) < 0 || read_u64(args[6], &h->salt_w2) < 0) return -1;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return -1; /* legacy (wstr) strings only; a no-op otherwise */
#endif
    return 0;
}

/* How many hashes a text of n code points with n_bounds word boundaries gets under h: the
 * layout every entry point allocates for and fill_hashes writes (char blocks, then unigrams, then
 * bigrams). */
typedef struct {
    Py_ssize_t n_words, n_uni, n_bi, n_char, n_word;
} HashLayout;

static inline HashLayout hash_layout(const HashArgs *h, Py_ssize_t n, Py_ssize_t n_bounds) {
    HashLayout l;
    l.n_words = n_bounds / 2;
    l.n_uni = h->want_uni ? l.n_words : 0;
    l.n_bi = (h->want_bi && l.n_words > 1) ? l.n_words - 1 : 0;
    l.n_char = 0;
    for (Py_ssize_t i = 0; i < h->n_sizes; i++)
        if (n >= h->ks[i]) l.n_char += n - h->ks[i] + 1;
    l.n_word = l.n_uni + l.n_bi;
    return l;
}

#endif
