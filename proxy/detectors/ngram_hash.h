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

#endif
