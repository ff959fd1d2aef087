/*
 * Compiled n-gram hashing for the embedded classifiers (proxy.detectors.injection.features).
 *
 * Why C: hashing every character 3/4/5-gram and word 1/2-gram of a 2 KB text with numpy costs ~75 us,
 * almost all of it numpy call overhead and ~200 KB temporaries; the same arithmetic in one pass over
 * the string takes a few microseconds. The values are bit-for-bit those of the numpy implementation
 * (FeatureHasher._mixed_numpy), which stays as the fallback when this module is not built and as the
 * reference the tests compare against:
 *
 *   char k-gram at i:  (sum_j s[i+j] * P^(k-1-j)) ^ salt_k               (mod 2^64)
 *   word unigram:      (sum_j w[j] * P^(len-1-j)) ^ salt_w1
 *   word bigram:       (fmix64(u_a) * BIGRAM + u_b) ^ salt_w2             (u = unsalted unigram hash)
 *   every value then:  fmix64 without its last xor-shift (FeatureHasher._mix, final_shift=False)
 *
 * The numpy version computes the same polynomials from prefix sums weighted by P^-1; both are exact
 * modulo 2^64, so they agree. Word characters: ASCII [a-z0-9_] and every non-ASCII code point (the
 * text is lower-cased before it gets here).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_COLUMNS 64

#include "ngram_hash.h"

/* hash_ngrams(text, char_sizes, char_salts, word_unigrams, word_bigrams, salt_w1, salt_w2)
 *   -> (hashes: bytes of uint64, starts: bytes of intp, ends: bytes of intp, n_uni, n_bi)
 * Layout of hashes: one block per char size present (n - k + 1 values, only when n >= k), then the
 * unigrams (when asked for), then the bigrams (when asked for). */
static PyObject *hash_ngrams(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "hash_ngrams takes 7 arguments");
        return NULL;
    }
    HashArgs h;
    if (read_hash_args(args, &h, "hash_ngrams(str, tuple, tuple, bool, bool, int, int)") < 0) return NULL;
    PyObject *text = args[0];
    Py_ssize_t n_sizes = h.n_sizes;
    const Py_ssize_t *ks = h.ks;
    const uint64_t *char_salts = h.char_salts;
    uint64_t salt_w1 = h.salt_w1, salt_w2 = h.salt_w2;

    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);

    /* Code points as uint32 (one copy: the loops below then need no per-kind variants), and the word
     * boundaries: every change of "is a word character" between neighbours, with a non-word character
     * assumed before and after the text; starts and ends alternate. */
    uint32_t *cp = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(uint32_t));
    Py_ssize_t *bounds = PyMem_Malloc((size_t)(n + 2) * sizeof(Py_ssize_t));
    if (cp == NULL || bounds == NULL) {
        PyMem_Free(cp);
        PyMem_Free(bounds);
        return PyErr_NoMemory();
    }
    PyThreadState *released = n >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    Py_ssize_t n_bounds = read_text(kind, data, n, cp, bounds);
    if (released) PyEval_RestoreThread(released);
    HashLayout l = hash_layout(&h, n, n_bounds);
    Py_ssize_t n_words = l.n_words, n_uni = l.n_uni, n_bi = l.n_bi;
    Py_ssize_t total = l.n_char + l.n_word;

    PyObject *hashes = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(uint64_t));
    PyObject *starts = PyBytes_FromStringAndSize(NULL, n_words * (Py_ssize_t)sizeof(Py_ssize_t));
    PyObject *ends = PyBytes_FromStringAndSize(NULL, n_words * (Py_ssize_t)sizeof(Py_ssize_t));
    if (hashes == NULL || starts == NULL || ends == NULL) goto fail;

    uint64_t *out = (uint64_t *)PyBytes_AS_STRING(hashes);
    Py_ssize_t *start_at = (Py_ssize_t *)PyBytes_AS_STRING(starts);
    Py_ssize_t *end_at = (Py_ssize_t *)PyBytes_AS_STRING(ends);
    released = n >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    fill_hashes(cp, n, ks, char_salts, n_sizes, bounds, n_words, n_uni, n_bi, salt_w1, salt_w2, out, start_at,
                end_at, NULL);
    if (released) PyEval_RestoreThread(released);

    PyMem_Free(cp);
    PyMem_Free(bounds);
    return Py_BuildValue("(NNNnn)", hashes, starts, ends, n_uni, n_bi);

fail:
    PyMem_Free(cp);
    PyMem_Free(bounds);
    Py_XDECREF(hashes);
    Py_XDECREF(starts);
    Py_XDECREF(ends);
    return NULL;
}

/* bucket_sums(hashes, shift, weights, n_char) -> (char_sums, word_sums)
 *   hashes: buffer of uint64 mixed hashes (hash_ngrams' first result; the first n_char are char
 *   n-grams); a hash's bucket is hash >> shift; weights: C-contiguous float32, shape (2**(64 - shift),)
 *   or (2**(64 - shift), columns). Returns the per-column weight sums of the char and of the word
 *   buckets as two tuples of floats, accumulated in double.
 * Why: the classifiers' logits are these sums scaled; numpy needs a shift, a gather into an
 * (n_ngrams, columns) temporary (~220 KB for the moderation model on 2 KB) and a reduction per group. */
static PyObject *bucket_sums(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "bucket_sums takes 4 arguments");
        return NULL;
    }
    Py_ssize_t shift = PyLong_AsSsize_t(args[1]);
    if (shift == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n_char = PyLong_AsSsize_t(args[3]);
    if (n_char == -1 && PyErr_Occurred()) return NULL;
    if (shift < 31 || shift > 63) {
        PyErr_SetString(PyExc_ValueError, "shift must be within [31, 63] (1 to 33 bucket bits)");
        return NULL;
    }
    Py_buffer hb, wb;
    if (PyObject_GetBuffer(args[0], &hb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &wb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) {
        PyBuffer_Release(&hb);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t rows = (Py_ssize_t)1 << (64 - shift);
    Py_ssize_t cols = wb.ndim == 2 ? wb.shape[1] : 1;
    if (strcmp(wb.format ? wb.format : "B", "f") != 0 || wb.itemsize != 4 || wb.ndim < 1 || wb.ndim > 2
        || wb.shape[0] != rows || cols < 1 || cols > MAX_COLUMNS) {
        PyErr_SetString(PyExc_ValueError, "weights must be float32 of shape (2**bits,) or (2**bits, <= 64)");
        goto done;
    }
    if (hb.len % (Py_ssize_t)sizeof(uint64_t) != 0) {
        PyErr_SetString(PyExc_ValueError, "hashes must be a buffer of uint64");
        goto done;
    }
    Py_ssize_t count = hb.len / (Py_ssize_t)sizeof(uint64_t);
    if (n_char < 0 || n_char > count) {
        PyErr_SetString(PyExc_ValueError, "n_char out of range");
        goto done;
    }
    const uint64_t *hashes = (const uint64_t *)hb.buf;
    const float *weights = (const float *)wb.buf;
    double sums[2][MAX_COLUMNS];
    memset(sums, 0, sizeof(sums));
    PyThreadState *released = count >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    for (int group = 0; group < 2; group++) {
        Py_ssize_t lo = group ? n_char : 0, hi = group ? count : n_char;
        double *acc = sums[group];
        if (cols == 1) {
            double total = 0.0;
            for (Py_ssize_t i = lo; i < hi; i++) total += weights[hashes[i] >> shift];
            acc[0] = total;
        } else if (cols == 8) { /* the moderation model: a constant width the compiler unrolls */
            for (Py_ssize_t i = lo; i < hi; i++) {
                const float *row = weights + (hashes[i] >> shift) * 8;
                for (int c = 0; c < 8; c++) acc[c] += row[c];
            }
        } else {
            for (Py_ssize_t i = lo; i < hi; i++) {
                const float *row = weights + (hashes[i] >> shift) * (uint64_t)cols;
                for (Py_ssize_t c = 0; c < cols; c++) acc[c] += row[c];
            }
        }
    }
    if (released) PyEval_RestoreThread(released);
    PyObject *char_sums = PyTuple_New(cols), *word_sums = PyTuple_New(cols);
    if (char_sums == NULL || word_sums == NULL) {
        Py_XDECREF(char_sums);
        Py_XDECREF(word_sums);
        goto done;
    }
    for (Py_ssize_t c = 0; c < cols; c++) {
        PyObject *a = PyFloat_FromDouble(sums[0][c]), *b = PyFloat_FromDouble(sums[1][c]);
        if (a == NULL || b == NULL) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            Py_DECREF(char_sums);
            Py_DECREF(word_sums);
            goto done;
        }
        PyTuple_SET_ITEM(char_sums, c, a);
        PyTuple_SET_ITEM(word_sums, c, b);
    }
    result = Py_BuildValue("(NN)", char_sums, word_sums);
done:
    PyBuffer_Release(&hb);
    PyBuffer_Release(&wb);
    return result;
}

/* Repetition gate for proxy.detectors.injection.repetition.collapse_repeats: does the string, split
 * on single spaces exactly as str.split(" ") splits it, hold a run of at least min_repeats copies of
 * a unit of 1..max_unit words back to back? That is: some lag p <= max_unit with (min_repeats - 1) * p
 * consecutive positions j where word j equals word j + p. Words are compared by content (a 64-bit
 * FNV-1a hash first, then the code points), so False means collapse_repeats has nothing to collapse;
 * True sends the text through the Python (numpy) search, which does the collapsing.
 *
 * Why: on 2 KB of prose that search (a hash per word and a words x 32 gather) costs ~80 us, and prose
 * almost never repeats; this scan costs a few. */
static PyObject *has_repeat(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "has_repeat(str, int, int)");
        return NULL;
    }
    PyObject *text = args[0];
    Py_ssize_t min_repeats = PyLong_AsSsize_t(args[1]);
    if (min_repeats == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t max_unit = PyLong_AsSsize_t(args[2]);
    if (max_unit == -1 && PyErr_Occurred()) return NULL;
    if (min_repeats < 2 || max_unit < 1) {
        PyErr_SetString(PyExc_ValueError, "min_repeats must be >= 2 and max_unit >= 1");
        return NULL;
    }
    if (PyUnicode_READY(text) < 0) return NULL;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    /* Word j is text[start[j] : start[j] + len[j]]; there are (number of spaces + 1) words. */
    Py_ssize_t n_words = 1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyUnicode_READ(kind, data, i) == ' ') n_words++;
    if (n_words < min_repeats) Py_RETURN_FALSE;
    Py_ssize_t *start = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * n_words);
    uint64_t *hash = PyMem_Malloc(sizeof(uint64_t) * n_words);
    if (start == NULL || hash == NULL) {
        PyMem_Free(start);
        PyMem_Free(hash);
        return PyErr_NoMemory();
    }
    Py_ssize_t *len = start + n_words;
    Py_ssize_t w = 0, ws = 0;
    uint64_t h = 0xCBF29CE484222325ULL;
    for (Py_ssize_t i = 0; i <= n; i++) {
        Py_UCS4 c = i < n ? PyUnicode_READ(kind, data, i) : ' ';
        if (c == ' ') {
            start[w] = ws;
            len[w] = i - ws;
            hash[w] = h;
            w++;
            ws = i + 1;
            h = 0xCBF29CE484222325ULL;
        } else {
            h = (h ^ (uint64_t)c) * P;
        }
    }
    int found = 0;
    Py_ssize_t top = n_words / min_repeats;
    if (top > max_unit) top = max_unit;
    for (Py_ssize_t p = 1; p <= top && !found; p++) {
        Py_ssize_t need = (min_repeats - 1) * p, run = 0;
        for (Py_ssize_t j = 0; j + p < n_words; j++) {
            Py_ssize_t k = j + p;
            if (hash[j] == hash[k] && len[j] == len[k] &&
                memcmp((const char *)data + start[j] * kind, (const char *)data + start[k] * kind,
                       (size_t)(len[j] * kind)) == 0) {
                if (++run >= need) {
                    found = 1;
                    break;
                }
            } else {
                run = 0;
            }
        }
    }
    PyMem_Free(start);
    PyMem_Free(hash);
    if (found) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"hash_ngrams", (PyCFunction)(void (*)(void))hash_ngrams, METH_FASTCALL,
     "Every char and word n-gram's mixed 64-bit hash of a prepared string (see features.py)."},
    {"bucket_sums", (PyCFunction)(void (*)(void))bucket_sums, METH_FASTCALL,
     "Per-column weight sums of the char and the word n-gram buckets (see features.py)."},
    {"has_repeat", (PyCFunction)(void (*)(void))has_repeat, METH_FASTCALL,
     "Whether collapse_repeats can find a repeat to collapse (see repetition.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ngram_kernel",
    "Compiled n-gram hashing for the embedded classifiers; the numpy version is the reference.", -1,
    methods, NULL, NULL, NULL, NULL,
};

static int add_moderation_functions(PyObject *module); /* the moderation block, at the end */

PyMODINIT_FUNC PyInit__ngram_kernel(void) {
    init_word_ascii();
    PyObject *created = PyModule_Create(&module);
    if (created != NULL && add_moderation_functions(created) < 0) Py_CLEAR(created);
    return created;
}


/* ==== Moderation canonicalisation (proxy.detectors.moderation.rules; issue 17) ====================
 * A block of its own at the end of the file, apart from the n-gram hashing above; registered on the
 * module by add_moderation_functions (called from PyInit). Each function has a pure-Python reference
 * in rules.py (the fallback when this module is missing or older) that
 * tests/unit/test_moderation_kernel.py compares it with. */

/* By ASCII byte: 1 letter a-z, 2 leet character (0-9 @ $), 0 otherwise; a "token character" of the
 * leet fold (rules._TOKEN_CHAR) is either. */
static unsigned char MOD_CLASS[128];
/* By ASCII byte: what the fold writes there (rules._LEET), 0 for characters it keeps. */
static unsigned char MOD_LEET[128];

static inline int mod_class(uint32_t c) { return c < 128 ? MOD_CLASS[c] : 0; }

static inline int mod_piece(uint32_t c) { return c < 128 && (MOD_CLASS[c] || c == '\'' || c == '!' || c == '|'); }

/* leet_fold's alt_pieces: each maximal run of piece characters ([a-z0-9'!|@$]) of alt that holds a
 * character differing from folded (an l read from a 1), in order, joined by single spaces. The runs
 * hold only ASCII characters, so the result is ASCII. from: no difference lies before it. */
static PyObject *alt_pieces(const void *fdata, const void *adata, int kind, Py_ssize_t n, Py_ssize_t from) {
    char *buf = PyMem_Malloc((size_t)(2 * n + 1));
    if (buf == NULL) return PyErr_NoMemory();
    Py_ssize_t len = 0, i = from; /* nothing differs before the first run holding a 1 */
    while (i < n) {
        if (PyUnicode_READ(kind, fdata, i) == PyUnicode_READ(kind, adata, i)) {
            i++;
            continue;
        }
        Py_ssize_t p = i, q = i + 1;
        while (p > 0 && mod_piece(PyUnicode_READ(kind, adata, p - 1))) p--;
        while (q < n && mod_piece(PyUnicode_READ(kind, adata, q))) q++;
        if (len) buf[len++] = ' ';
        for (Py_ssize_t j = p; j < q; j++) buf[len++] = (char)PyUnicode_READ(kind, adata, j);
        i = q;
    }
    PyObject *out = PyUnicode_DecodeASCII(buf, len, NULL);
    PyMem_Free(buf);
    return out;
}

/* leet_fold(text) -> None | (folded, alt | None, alt_pieces | None)
 *   text: lower-cased. Every maximal run of [a-z0-9@$] that holds a leet character and a letter is
 *   folded (0->o 1->i 3->e 4->a 5->s 7->t @->a $->s, other digits kept); alt reads 1 as l in those
 *   runs and is None when no folded run holds a 1. None when no run is folded. alt_pieces: the only
 *   parts of alt that differ from folded, each widened to its maximal run of [a-z0-9'!|@$] (so
 *   whole tokens, whatever "!" or "|" later become), in order, joined by single spaces; None with alt.
 * Why: rules._leet_tokens grew each run character by character in Python (~28 us per 2 KB support
 * ticket, whose e-mail addresses hold digits), and the fold then sliced and joined per run. */
static PyObject *leet_fold(PyObject *self, PyObject *text) {
    (void)self;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "leet_fold(str)");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *folded = NULL, *alt = NULL;
    void *fdata = NULL, *adata = NULL;
    Py_ssize_t first_one = -1; /* where the first folded run holding a 1 starts */
    /* The scan, once per string kind (READ with a constant kind: no switch per character). */
#define LEET_SCAN(KIND)                                                                               \
    do {                                                                                              \
        Py_ssize_t i = 0;                                                                             \
        while (i < n) {                                                                               \
            if (!mod_class(PyUnicode_READ(KIND, data, i))) {                                          \
                i++;                                                                                  \
                continue;                                                                             \
            }                                                                                         \
            Py_ssize_t start = i;                                                                     \
            int seen = 0, ones = 0; /* bit 1: a letter, bit 2: a leet character */                    \
            for (; i < n; i++) {                                                                      \
                uint32_t c = PyUnicode_READ(KIND, data, i);                                           \
                int k = mod_class(c);                                                                 \
                if (!k) break;                                                                        \
                seen |= k;                                                                            \
                ones |= c == '1';                                                                     \
            }                                                                                         \
            if (seen != 3) continue;                                                                  \
            if (folded == NULL) { /* the first folded run: copy the text once, then edit in place */ \
                Py_UCS4 maxchar = PyUnicode_MAX_CHAR_VALUE(text);                                     \
                folded = PyUnicode_New(n, maxchar);                                                   \
                alt = PyUnicode_New(n, maxchar);                                                      \
                if (folded == NULL || alt == NULL) goto fail;                                         \
                fdata = PyUnicode_DATA(folded);                                                       \
                adata = PyUnicode_DATA(alt);                                                          \
                memcpy(fdata, data, (size_t)n * (size_t)kind);                                        \
                memcpy(adata, data, (size_t)n * (size_t)kind);                                        \
            }                                                                                         \
            if (ones && first_one < 0) first_one = start;                                             \
            for (Py_ssize_t j = start; j < i; j++) {                                                  \
                uint32_t c = PyUnicode_READ(KIND, data, j); /* ASCII: the run holds [a-z0-9@$] */     \
                unsigned char to = MOD_LEET[c];                                                       \
                if (to) PyUnicode_WRITE(KIND, fdata, j, to);                                          \
                if (c == '1') to = 'l';                                                               \
                if (to) PyUnicode_WRITE(KIND, adata, j, to);                                          \
            }                                                                                         \
        }                                                                                             \
    } while (0)
    if (kind == PyUnicode_1BYTE_KIND)
        LEET_SCAN(PyUnicode_1BYTE_KIND);
    else if (kind == PyUnicode_2BYTE_KIND)
        LEET_SCAN(PyUnicode_2BYTE_KIND);
    else
        LEET_SCAN(PyUnicode_4BYTE_KIND);
#undef LEET_SCAN
    if (folded == NULL) Py_RETURN_NONE;
    if (first_one < 0) {
        Py_DECREF(alt);
        return Py_BuildValue("(NOO)", folded, Py_None, Py_None);
    }
    PyObject *pieces = alt_pieces(fdata, adata, kind, n, first_one);
    if (pieces == NULL) goto fail;
    return Py_BuildValue("(NNN)", folded, alt, pieces);
fail:
    Py_XDECREF(folded);
    Py_XDECREF(alt);
    return NULL;
}

/* has_letter_triple(text) -> bool: some letter a-z three times in a row (rules._RUN can match).
 * Why: the numpy comparison it replaces (rules._has_triple) cost ~6 us per 2 KB, mostly call overhead. */
static PyObject *has_letter_triple(PyObject *self, PyObject *text) {
    (void)self;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "has_letter_triple(str)");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    uint32_t prev = 0;
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t c = PyUnicode_READ(kind, data, i);
        run = c == prev ? run + 1 : 1;
        prev = c;
        if (run >= 3 && c >= 'a' && c <= 'z') Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* hash_bucket_sums(text, char_sizes, char_salts, word_unigrams, word_bigrams, salt_w1, salt_w2, shift,
 *                  weights) -> (char_sums, word_sums, n_char, n_word)
 *   bucket_sums(hash_ngrams(text, ...)[0], shift, weights, n_char) in one call: the same hashes
 *   (fill_hashes) summed in the same order by the same loop, so the sums are equal bit for bit.
 *   n_char / n_word: how many char / word n-grams were summed (the groups' sizes for their scales).
 * Why: the moderation classifier scores a window it has not hashed before (answers, and prompts whose
 * canonical text differs from the injection step's) with hash_ngrams, numpy views of its three
 * buffers and bucket_sums; the bytes objects, the views and the Python in between cost ~6 us of
 * ~32 per 2 KB, for hashes nobody else reads. */
static PyObject *hash_bucket_sums(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "hash_bucket_sums takes 9 arguments");
        return NULL;
    }
    HashArgs h;
    if (read_hash_args(args, &h, "hash_bucket_sums(str, tuple, tuple, bool, bool, int, int, int, array)") < 0)
        return NULL;
    PyObject *text = args[0];
    Py_ssize_t n_sizes = h.n_sizes;
    const Py_ssize_t *ks = h.ks;
    const uint64_t *char_salts = h.char_salts;
    uint64_t salt_w1 = h.salt_w1, salt_w2 = h.salt_w2;
    Py_ssize_t shift = PyLong_AsSsize_t(args[7]);
    if (shift == -1 && PyErr_Occurred()) return NULL;
    if (shift < 31 || shift > 63) {
        PyErr_SetString(PyExc_ValueError, "shift must be within [31, 63] (1 to 33 bucket bits)");
        return NULL;
    }
    Py_buffer wb;
    if (PyObject_GetBuffer(args[8], &wb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) return NULL;
    PyObject *result = NULL;
    uint32_t *cp = NULL;
    Py_ssize_t *bounds = NULL;
    uint64_t *hashes = NULL;
    Py_ssize_t *starts = NULL, *ends = NULL;
    Py_ssize_t rows = (Py_ssize_t)1 << (64 - shift);
    Py_ssize_t cols = wb.ndim == 2 ? wb.shape[1] : 1;
    if (strcmp(wb.format ? wb.format : "B", "f") != 0 || wb.itemsize != 4 || wb.ndim < 1 || wb.ndim > 2
        || wb.shape[0] != rows || cols < 1 || cols > MAX_COLUMNS) {
        PyErr_SetString(PyExc_ValueError, "weights must be float32 of shape (2**bits,) or (2**bits, <= 64)");
        goto done;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    cp = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(uint32_t));
    bounds = PyMem_Malloc((size_t)(n + 2) * sizeof(Py_ssize_t));
    if (cp == NULL || bounds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    HashLayout l = hash_layout(&h, n, read_text(PyUnicode_KIND(text), PyUnicode_DATA(text), n, cp, bounds));
    Py_ssize_t n_words = l.n_words, n_uni = l.n_uni, n_bi = l.n_bi, n_char = l.n_char, n_word = l.n_word;
    /* hash_ngrams' own arithmetic into a scratch buffer (summing while hashing was slower: the
     * gathers of a separate pass over ready hashes overlap far better), then bucket_sums' loop. */
    hashes = PyMem_Malloc((size_t)(n_char + n_word + 1) * sizeof(uint64_t));
    starts = PyMem_Malloc((size_t)(n_words + 1) * sizeof(Py_ssize_t));
    ends = PyMem_Malloc((size_t)(n_words + 1) * sizeof(Py_ssize_t));
    if (hashes == NULL || starts == NULL || ends == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    fill_hashes(cp, n, ks, char_salts, n_sizes, bounds, n_words, n_uni, n_bi, salt_w1, salt_w2, hashes, starts,
                ends, NULL);
    const float *weights = (const float *)wb.buf;
    double sums[2][MAX_COLUMNS];
    memset(sums, 0, sizeof(sums));
    for (int group = 0; group < 2; group++) {
        Py_ssize_t lo = group ? n_char : 0, hi = group ? n_char + n_word : n_char;
        double *acc = sums[group];
        if (cols == 8) {
            for (Py_ssize_t i = lo; i < hi; i++) {
                const float *row = weights + (hashes[i] >> shift) * 8;
                for (int c = 0; c < 8; c++) acc[c] += row[c];
            }
        } else {
            for (Py_ssize_t i = lo; i < hi; i++) {
                const float *row = weights + (hashes[i] >> shift) * (uint64_t)cols;
                for (Py_ssize_t c = 0; c < cols; c++) acc[c] += row[c];
            }
        }
    }
    PyObject *char_sums = PyTuple_New(cols), *word_sums = PyTuple_New(cols);
    if (char_sums == NULL || word_sums == NULL) {
        Py_XDECREF(char_sums);
        Py_XDECREF(word_sums);
        goto done;
    }
    for (Py_ssize_t c = 0; c < cols; c++) {
        PyObject *a = PyFloat_FromDouble(sums[0][c]), *b = PyFloat_FromDouble(sums[1][c]);
        if (a == NULL || b == NULL) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            Py_DECREF(char_sums);
            Py_DECREF(word_sums);
            goto done;
        }
        PyTuple_SET_ITEM(char_sums, c, a);
        PyTuple_SET_ITEM(word_sums, c, b);
    }
    result = Py_BuildValue("(NNnn)", char_sums, word_sums, n_char, n_word);
done:
    PyMem_Free(cp);
    PyMem_Free(bounds);
    PyMem_Free(hashes);
    PyMem_Free(starts);
    PyMem_Free(ends);
    PyBuffer_Release(&wb);
    return result;
}

/* By ASCII byte: 1 for the characters of a rules token ([a-z0-9']), 2 for [a-z0-9] (rules._TOKEN). */
static unsigned char TOK_CLASS[128];
/* The filter: a byte per slot, set for every vocabulary word; a token's slot is the 32-bit FNV-1a of
 * its (ASCII) characters folded to 16 bits (rules._token_slot computes the same). It rules out almost
 * every word of prose before a str is made for the set lookup. */
#define TOK_FILTER_SIZE 65536

static inline int tok_class(uint32_t c) { return c < 128 ? TOK_CLASS[c] : 0; }

/* One candidate token text[a:b] that passed the filter: added to found when it is in vocab. */
static int tok_check(PyObject *text, Py_ssize_t a, Py_ssize_t b, PyObject *vocab, PyObject *found) {
    PyObject *word = PyUnicode_Substring(text, a, b);
    if (word == NULL) return -1;
    int in = PySet_Contains(vocab, word);
    int rc = in > 0 ? PySet_Add(found, word) : in;
    Py_DECREF(word);
    return rc < 0 ? -1 : 0;
}

/* vocab_tokens(text, filter, vocab) -> set[str]: rules._vocab_tokens(text, vocab), the words of
 *   vocab among text's tokens. Tokens as rules._tokens cuts them: pieces are maximal runs of
 *   ASCII [a-z0-9'] (everything else, non-ASCII too, separates), and a piece's tokens are what
 *   re.findall("[a-z0-9]+(?:'[a-z]+)?") finds in it. filter: rules._token_filter(vocab).
 * Why: the Python version splits 2 KB into ~350 bytes objects and hashes each to intersect them with
 *   the vocabulary (~15 us per 2 KB, twice when a text has a 1-as-l reading); here a word the filter
 *   rules out costs a few instructions and makes no object. */
static PyObject *vocab_tokens(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyUnicode_Check(args[0]) || !PyAnySet_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "vocab_tokens(str, bytes, frozenset)");
        return NULL;
    }
    PyObject *text = args[0], *vocab = args[2];
    Py_buffer fb;
    if (PyObject_GetBuffer(args[1], &fb, PyBUF_SIMPLE) < 0) return NULL;
    if (fb.len != TOK_FILTER_SIZE) {
        PyBuffer_Release(&fb);
        PyErr_SetString(PyExc_ValueError, "vocab_tokens: filter of the wrong size");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        PyBuffer_Release(&fb);
        return NULL;
    }
#endif
    const unsigned char *filter = (const unsigned char *)fb.buf;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *found = PySet_New(NULL);
    if (found == NULL) goto fail;
    /* The scan, once per string kind (READ with a constant kind: no switch per character). */
#define TOK_SCAN(KIND)                                                                                \
    do {                                                                                              \
        Py_ssize_t i = 0;                                                                             \
        while (i < n) {                                                                               \
            /* findall: a token starts at [a-z0-9]; anything else ("'", separators) is stepped over */ \
            if (tok_class(PyUnicode_READ(KIND, data, i)) != 2) {                                      \
                i++;                                                                                  \
                continue;                                                                             \
            }                                                                                         \
            Py_ssize_t a = i;                                                                         \
            uint32_t h = 2166136261u;                                                                 \
            uint32_t c;                                                                               \
            while (i < n && tok_class(c = PyUnicode_READ(KIND, data, i)) == 2) {                      \
                h = (h ^ c) * 16777619u;                                                              \
                i++;                                                                                  \
            }                                                                                         \
            if (i + 1 < n && PyUnicode_READ(KIND, data, i) == '\'') {                                 \
                c = PyUnicode_READ(KIND, data, i + 1);                                                \
                if (c >= 'a' && c <= 'z') {                                                           \
                    h = (h ^ '\'') * 16777619u;                                                       \
                    i++;                                                                              \
                    while (i < n && (c = PyUnicode_READ(KIND, data, i)) >= 'a' && c <= 'z') {         \
                        h = (h ^ c) * 16777619u;                                                      \
                        i++;                                                                          \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
            if (filter[(h ^ (h >> 16)) & (TOK_FILTER_SIZE - 1)]                                       \
                && tok_check(text, a, i, vocab, found) < 0)                                           \
                goto fail;                                                                            \
        }                                                                                             \
    } while (0)
    if (kind == PyUnicode_1BYTE_KIND)
        TOK_SCAN(PyUnicode_1BYTE_KIND);
    else if (kind == PyUnicode_2BYTE_KIND)
        TOK_SCAN(PyUnicode_2BYTE_KIND);
    else
        TOK_SCAN(PyUnicode_4BYTE_KIND);
#undef TOK_SCAN
    PyBuffer_Release(&fb);
    return found;
fail:
    PyBuffer_Release(&fb);
    Py_XDECREF(found);
    return NULL;
}

/* By ASCII letter: 1 for the letters squeezed to two (rules._DOUBLING), 0 for those squeezed to one. */
static unsigned char MOD_DOUBLING[128];

/* squeeze_runs(text) -> str: rules._RUN.sub(rules._squeeze, text): every maximal run of three or more
 *   equal letters a-z becomes two of them (letters that double in English) or one.
 * Why: re tries the backreference at every letter and calls back into Python per run (~3 ms per
 *   64 KB, ~100 us per 2 KB); a text needs it as soon as one run is there (an e-mail address such as
 *   finance111@... folds to "financeiii"), and the rules squeeze both readings. */
static PyObject *squeeze_runs(PyObject *self, PyObject *text) {
    (void)self;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "squeeze_runs(str)");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *out = PyUnicode_New(n, PyUnicode_MAX_CHAR_VALUE(text));
    if (out == NULL) return NULL;
    void *odata = PyUnicode_DATA(out);
    Py_ssize_t len = 0, i = 0;
    while (i < n) {
        uint32_t c = PyUnicode_READ(kind, data, i);
        Py_ssize_t j = i + 1;
        while (j < n && PyUnicode_READ(kind, data, j) == c) j++;
        Py_ssize_t keep = j - i;
        if (keep >= 3 && c >= 'a' && c <= 'z') keep = MOD_DOUBLING[c] ? 2 : 1;
        for (Py_ssize_t k = 0; k < keep; k++) PyUnicode_WRITE(kind, odata, len++, c);
        i = j;
    }
    if (len == n) return out;
    /* Shorter: a copy of the right length (the characters kept need no larger kind than before,
     * but may need a smaller one: PyUnicode_Substring makes the canonical string). */
    PyObject *cut = PyUnicode_Substring(out, 0, len);
    Py_DECREF(out);
    return cut;
}

static PyMethodDef moderation_methods[] = {
    {"leet_fold", (PyCFunction)leet_fold, METH_O, "Moderation: fold leetspeak runs (see rules.py)."},
    {"has_letter_triple", (PyCFunction)has_letter_triple, METH_O,
     "Moderation: some letter a-z three times in a row (see rules.py)."},
    {"squeeze_runs", (PyCFunction)squeeze_runs, METH_O, "Moderation: squeeze letter runs (see rules.py)."},
    {"vocab_tokens", (PyCFunction)(void (*)(void))vocab_tokens, METH_FASTCALL,
     "Moderation rules: the vocabulary words among a text's tokens (see rules.py)."},
    {"hash_bucket_sums", (PyCFunction)(void (*)(void))hash_bucket_sums, METH_FASTCALL,
     "Moderation classifier: hash_ngrams + bucket_sums in one pass (see classifier.py)."},
    {NULL, NULL, 0, NULL},
};

static int add_moderation_functions(PyObject *module) {
    memset(MOD_CLASS, 0, sizeof(MOD_CLASS));
    memset(MOD_LEET, 0, sizeof(MOD_LEET));
    for (int c = 'a'; c <= 'z'; c++) MOD_CLASS[c] = 1;
    memset(MOD_DOUBLING, 0, sizeof(MOD_DOUBLING));
    for (const char *c = "bcdefglmnoprstz"; *c; c++) MOD_DOUBLING[(unsigned char)*c] = 1; /* rules._DOUBLING */
    memset(TOK_CLASS, 0, sizeof(TOK_CLASS));
    for (const char *c = "abcdefghijklmnopqrstuvwxyz0123456789"; *c; c++) TOK_CLASS[(unsigned char)*c] = 2;
    TOK_CLASS['\''] = 1;
    for (const char *c = "0123456789@$"; *c; c++) MOD_CLASS[(unsigned char)*c] = 2;
    const char *from = "013457@$", *to = "oieastas"; /* rules._LEET, pair by pair */
    for (int k = 0; from[k]; k++) MOD_LEET[(unsigned char)from[k]] = (unsigned char)to[k];
    return PyModule_AddFunctions(module, moderation_methods);
}
/* ==== end of the moderation block ==================================================================== */
