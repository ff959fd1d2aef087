/*
 * The moderation detector's hot loops (issue 17); every function has a reference it must equal:
 *   hash_sums16, sums16   _ngram_kernel's hash_bucket_sums / bucket_sums, from the float16 table;
 *   ascii_scores16        ModerationClassifier.score_list of one ASCII window, in one call;
 *   squeeze_runs          rules._squeeze_runs_python;
 *   literals_present      {lit for lit in literals if lit in text} (rules._LiteralScan);
 *   set_simd              for the tests: the x86 paths on or off (the portable C is the other).
 *
 * The sums: the same (char_sums, word_sums) as _ngram_kernel's hash_bucket_sums / bucket_sums on the
 * model's float32 table, read from the file's float16 table instead (rows of 8 halves: 16 bytes).
 * The hashing primitives (mix, word classes, read_text) come from ../ngram_hash.h, shared with
 * _ngram_kernel.c; fill_hashes adds an AVX-512 path to the same arithmetic, and
 * tests/unit/test_moderation_kernel16.py compares the two modules bit for bit.
 *
 * Why float16: the model's weights are float16 in moderation_model.npz; widened to float32 the
 * table is 4 MB, more than a core's L2, and a 2 KB scan gathers ~6,500 random rows of it. At 2 MB
 * fewer of those gathers miss, and every other step of the scan keeps more of its own data cached.
 *
 * Why the sums are equal bit for bit, in any order: every float16 value is an integer multiple of
 * 2^-24 (the smallest subnormal). A sum of such values is again one, and it is exact in double as
 * long as its magnitude stays below 2^29 (then it is m * 2^-24 with |m| < 2^53). So while
 * bound * terms < 2^28 (bound: the largest |weight|; checked per call) no partial sum is rounded,
 * whatever the order, and the kernel may use four independent accumulators: the reference's single
 * chain of dependent additions (4 cycles each, ~6,500 per 2 KB) was the loop's limit, not the loads.
 * Past that bound it sums in the reference's order, one accumulator, which is equal by construction
 * (float16 -> float32 -> double is exact either way).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define HAVE_X86_F16C 1
#else
#define HAVE_X86_F16C 0
#endif

#define COLUMNS 8
/* Four accumulators only while every partial sum is provably exact (see the header). */
#define EXACT_LIMIT 268435456.0 /* 2^28 */

#include "../ngram_hash.h"

static int use_avx512 = 0; /* set at import when the CPU has AVX-512 F and DQ (set_simd for tests) */

#if HAVE_X86_F16C
/* The char n-gram part of fill_hashes for eight start positions at a time (AVX-512: 64-bit lanes,
 * vpmullq), for every start whose longest n-gram fits in the text; returns the first start left to
 * the scalar loop. The same polynomial and finaliser mod 2^64 lane by lane, so the same values
 * (integer arithmetic: no rounding anywhere); tests compare it with _ngram_kernel.hash_ngrams.
 * Why: hashing was half of the classifier's kernel time (~11 us per 2 KB): ~10 dependent-free
 * multiplications per character, one at a time. */
__attribute__((target("avx2,avx512f,avx512dq"))) static Py_ssize_t char_hashes_avx512(
    const uint32_t *cp, Py_ssize_t n, Py_ssize_t longest, const Py_ssize_t *block_at, const uint64_t *salt_at,
    uint64_t *out) {
    const __m512i vp = _mm512_set1_epi64((long long)P), m1 = _mm512_set1_epi64((long long)M1),
                  m2 = _mm512_set1_epi64((long long)M2);
    Py_ssize_t i = 0;
    for (; i + 7 + longest <= n; i += 8) {
        __m512i h = _mm512_setzero_si512();
        for (Py_ssize_t len = 1; len <= longest; len++) {
            __m512i c = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(cp + i + len - 1)));
            h = _mm512_add_epi64(_mm512_mullo_epi64(h, vp), c);
            if (block_at[len] >= 0) {
                __m512i x = _mm512_xor_si512(h, _mm512_set1_epi64((long long)salt_at[len]));
                x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 33));
                x = _mm512_mullo_epi64(x, m1);
                x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 33));
                x = _mm512_mullo_epi64(x, m2);
                _mm512_storeu_si512((void *)(out + block_at[len] + i), x);
            }
        }
    }
    return i;
}
#endif

/* The vectorised char n-gram pass fill_hashes may use now (set_simd switches it for the tests). */
static inline char_hashes_fn mod_simd(void) {
#if HAVE_X86_F16C
    return use_avx512 ? char_hashes_avx512 : NULL;
#else
    return NULL;
#endif
}

/* IEEE half -> float, exact (every half is a float): the portable path. */
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Sums of rows[hashes[i] >> shift] over [lo, hi) into acc (8 doubles), portable. ways: 1 = the
 * reference's order, 4 = four interleaved accumulators (only when exact, see the header). */
static void sum_rows_portable(const uint64_t *hashes, Py_ssize_t lo, Py_ssize_t hi, int shift,
                              const uint16_t *w, int ways, double *acc) {
    double part[4][COLUMNS];
    memset(part, 0, sizeof(part));
    Py_ssize_t i = lo;
    if (ways == 4) {
        for (; i + 4 <= hi; i += 4) {
            for (int k = 0; k < 4; k++) {
                const uint16_t *row = w + (hashes[i + k] >> shift) * COLUMNS;
                for (int c = 0; c < COLUMNS; c++) part[k][c] += (double)half_to_float(row[c]);
            }
        }
    }
    for (; i < hi; i++) {
        const uint16_t *row = w + (hashes[i] >> shift) * COLUMNS;
        for (int c = 0; c < COLUMNS; c++) part[0][c] += (double)half_to_float(row[c]);
    }
    for (int c = 0; c < COLUMNS; c++) acc[c] = ((part[0][c] + part[1][c]) + part[2][c]) + part[3][c];
}

#if HAVE_X86_F16C
/* sum_rows_portable with F16C/AVX: a row is one 128-bit load, widened to 8 floats then 2 x 4 doubles;
 * each column still gets one IEEE double addition per term (no fused multiply-add anywhere). */
__attribute__((target("avx,f16c"))) static void sum_rows_f16c(const uint64_t *hashes, Py_ssize_t lo,
                                                               Py_ssize_t hi, int shift, const uint16_t *w,
                                                               int ways, double *acc) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), b0 = _mm256_setzero_pd(),
            b1 = _mm256_setzero_pd(), c0 = _mm256_setzero_pd(), c1 = _mm256_setzero_pd(),
            d0 = _mm256_setzero_pd(), d1 = _mm256_setzero_pd();
#define ROW(IDX, X0, X1)                                                                             \
    do {                                                                                             \
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + ((IDX) >> shift) * COLUMNS))); \
        X0 = _mm256_add_pd(X0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));                          \
        X1 = _mm256_add_pd(X1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));                        \
    } while (0)
    Py_ssize_t i = lo;
    if (ways == 4) {
        for (; i + 4 <= hi; i += 4) {
            ROW(hashes[i], a0, a1);
            ROW(hashes[i + 1], b0, b1);
            ROW(hashes[i + 2], c0, c1);
            ROW(hashes[i + 3], d0, d1);
        }
    }
    for (; i < hi; i++) ROW(hashes[i], a0, a1);
#undef ROW
    __m256d s0 = _mm256_add_pd(_mm256_add_pd(_mm256_add_pd(a0, b0), c0), d0);
    __m256d s1 = _mm256_add_pd(_mm256_add_pd(_mm256_add_pd(a1, b1), c1), d1);
    _mm256_storeu_pd(acc, s0);
    _mm256_storeu_pd(acc + 4, s1);
}
#endif

static int use_f16c = 0;

/* The sums of both groups: [0, n_char) chars, [n_char, count) words. bound: the largest |weight|. */
static void group_sums(const uint64_t *hashes, Py_ssize_t n_char, Py_ssize_t count, int shift,
                       const uint16_t *w, double bound, double sums[2][COLUMNS]) {
    for (int group = 0; group < 2; group++) {
        Py_ssize_t lo = group ? n_char : 0, hi = group ? count : n_char;
        int ways = bound * (double)(hi - lo) < EXACT_LIMIT ? 4 : 1;
#if HAVE_X86_F16C
        if (use_f16c) {
            sum_rows_f16c(hashes, lo, hi, shift, w, ways, sums[group]);
            continue;
        }
#endif
        sum_rows_portable(hashes, lo, hi, shift, w, ways, sums[group]);
    }
}

/* Reads the float16 table argument: C-contiguous, format "e", shape (2**(64 - shift), 8). */
static int read_weights(PyObject *obj, Py_ssize_t shift, Py_buffer *wb) {
    if (PyObject_GetBuffer(obj, wb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) return -1;
    if (strcmp(wb->format ? wb->format : "B", "e") != 0 || wb->itemsize != 2 || wb->ndim != 2
        || wb->shape[0] != ((Py_ssize_t)1 << (64 - shift)) || wb->shape[1] != COLUMNS) {
        PyBuffer_Release(wb);
        PyErr_SetString(PyExc_ValueError, "weights must be float16 of shape (2**bits, 8)");
        return -1;
    }
    return 0;
}

static int read_shift(PyObject *obj, Py_ssize_t *shift) {
    *shift = PyLong_AsSsize_t(obj);
    if (*shift == -1 && PyErr_Occurred()) return -1;
    if (*shift < 31 || *shift > 63) {
        PyErr_SetString(PyExc_ValueError, "shift must be within [31, 63] (1 to 33 bucket bits)");
        return -1;
    }
    return 0;
}

static PyObject *sums_tuple(const double sums[2][COLUMNS]) {
    PyObject *a = PyTuple_New(COLUMNS), *b = PyTuple_New(COLUMNS);
    if (a == NULL || b == NULL) goto fail;
    for (int c = 0; c < COLUMNS; c++) {
        PyObject *x = PyFloat_FromDouble(sums[0][c]), *y = PyFloat_FromDouble(sums[1][c]);
        if (x == NULL || y == NULL) {
            Py_XDECREF(x);
            Py_XDECREF(y);
            goto fail;
        }
        PyTuple_SET_ITEM(a, c, x);
        PyTuple_SET_ITEM(b, c, y);
    }
    return Py_BuildValue("(NN)", a, b);
fail:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return NULL;
}

/* hash_sums16(text, char_sizes, char_salts, word_unigrams, word_bigrams, salt_w1, salt_w2, shift,
 *             weights16, bound) -> (char_sums, word_sums, n_char, n_word)
 *   _ngram_kernel.hash_bucket_sums with the float16 table; bound: max |weight| of the table. */
static PyObject *hash_sums16(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 10 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1]) || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "hash_sums16(str, tuple, tuple, bool, bool, int, int, int, array, float)");
        return NULL;
    }
    PyObject *text = args[0];
    HashArgs h;
    if (read_hash_args(args, &h, "hash_sums16(str, tuple, tuple, bool, bool, int, int, int, array, float)") < 0)
        return NULL;
    Py_ssize_t n_sizes = h.n_sizes;
    const Py_ssize_t *ks = h.ks;
    const uint64_t *char_salts = h.char_salts;
    uint64_t salt_w1 = h.salt_w1, salt_w2 = h.salt_w2;
    Py_ssize_t shift;
    if (read_shift(args[7], &shift) < 0) return NULL;
    double bound = PyFloat_AsDouble(args[9]);
    if (bound == -1.0 && PyErr_Occurred()) return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;
#endif
    Py_buffer wb;
    if (read_weights(args[8], shift, &wb) < 0) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    uint32_t *cp = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(uint32_t));
    Py_ssize_t *bounds = PyMem_Malloc((size_t)(n + 2) * sizeof(Py_ssize_t));
    uint64_t *hashes = NULL;
    if (cp == NULL || bounds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    HashLayout l = hash_layout(&h, n, read_text(PyUnicode_KIND(text), PyUnicode_DATA(text), n, cp, bounds));
    Py_ssize_t n_words = l.n_words, n_uni = l.n_uni, n_bi = l.n_bi, n_char = l.n_char, n_word = l.n_word;
    hashes = PyMem_Malloc((size_t)(n_char + n_word + 1) * sizeof(uint64_t));
    if (hashes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double sums[2][COLUMNS];
    PyThreadState *released = n >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    fill_hashes(cp, n, ks, char_salts, n_sizes, bounds, n_words, n_uni, n_bi, salt_w1, salt_w2, hashes, NULL, NULL, mod_simd());
    group_sums(hashes, n_char, n_char + n_word, (int)shift, (const uint16_t *)wb.buf, bound, sums);
    if (released) PyEval_RestoreThread(released);
    PyObject *pair = sums_tuple((const double(*)[COLUMNS])sums);
    if (pair != NULL) {
        result = Py_BuildValue("(OOnn)", PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1), n_char, n_word);
        Py_DECREF(pair);
    }
done:
    PyMem_Free(cp);
    PyMem_Free(bounds);
    PyMem_Free(hashes);
    PyBuffer_Release(&wb);
    return result;
}

/* sums16(hashes, shift, weights16, n_char, bound) -> (char_sums, word_sums)
 *   _ngram_kernel.bucket_sums with the float16 table (mixed hashes from a request's HashCache). */
static PyObject *sums16(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "sums16(hashes, int, array, int, float)");
        return NULL;
    }
    Py_ssize_t shift;
    if (read_shift(args[1], &shift) < 0) return NULL;
    Py_ssize_t n_char = PyLong_AsSsize_t(args[3]);
    if (n_char == -1 && PyErr_Occurred()) return NULL;
    double bound = PyFloat_AsDouble(args[4]);
    if (bound == -1.0 && PyErr_Occurred()) return NULL;
    Py_buffer hb, wb;
    if (PyObject_GetBuffer(args[0], &hb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (read_weights(args[2], shift, &wb) < 0) {
        PyBuffer_Release(&hb);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count = hb.len / (Py_ssize_t)sizeof(uint64_t);
    if (hb.len % (Py_ssize_t)sizeof(uint64_t) != 0 || n_char < 0 || n_char > count) {
        PyErr_SetString(PyExc_ValueError, "hashes must be a buffer of uint64 with at least n_char values");
        goto done;
    }
    double sums[2][COLUMNS];
    PyThreadState *released = count >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    group_sums((const uint64_t *)hb.buf, n_char, count, (int)shift, (const uint16_t *)wb.buf, bound, sums);
    if (released) PyEval_RestoreThread(released);
    result = sums_tuple((const double(*)[COLUMNS])sums);
done:
    PyBuffer_Release(&hb);
    PyBuffer_Release(&wb);
    return result;
}

/* By ASCII byte: 1 for the characters str.split() splits ASCII text at (space, \t \n \v \f \r, \x1c-\x1f). */
static unsigned char SPLIT_ASCII[128];

/* The float16 path's logit -> score for one column: rules of classifier.py's _window_list and
 * score_list, operation by operation (bias + char_sum * char_scale + word_sum * word_scale, clipped
 * to [-60, 60], then 1 / (1 + exp(-z)) with the C library's exp, as math.exp). The products go
 * through volatile temporaries so no compiler fuses them into a multiply-add (which rounds once
 * instead of twice and would change the last bit). */
static double column_score(double bias, double char_sum, double char_scale, double word_sum, double word_scale) {
    volatile double char_part = char_sum * char_scale;
    volatile double word_part = word_sum * word_scale;
    volatile double z = bias + char_part;
    z = z + word_part;
    double clipped = z > 60.0 ? 60.0 : (z < -60.0 ? -60.0 : z);
    return 1.0 / (1.0 + exp(-clipped));
}

/* ascii_scores16(text, char_sizes, char_salts, word_unigrams, word_bigrams, salt_w1, salt_w2, shift,
 *                weights16, bound, biases, char_k, word_k, window) -> list[float] | None
 *   ModerationClassifier.score_list(text) for an ASCII text of at most ``window`` characters, in one
 *   call: FeatureHasher.prepare (lower-case, whitespace runs to one space, a space at both ends) into
 *   the hashing buffer, the sums of hash_sums16, the logits and the sigmoid. None for a text that is
 *   not ASCII (the caller prepares it in Python: str.lower and str.split are Unicode-aware).
 * Why: the Python around the sums (prepare, the tuples, eight logits and sigmoids) cost ~6 us per
 *   scan, a fifth of the classifier. */
static PyObject *ascii_scores16(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 14 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1]) || !PyTuple_Check(args[2])
        || !PyTuple_Check(args[10])) {
        PyErr_SetString(PyExc_TypeError, "ascii_scores16(str, tuple, tuple, bool, bool, int, int, int, array, "
                                         "float, tuple, int, int, int)");
        return NULL;
    }
    PyObject *text = args[0];
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;
#endif
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    HashArgs h;
    if (read_hash_args(args, &h,
                       "ascii_scores16(str, tuple, tuple, bool, bool, int, int, int, array, float, tuple, int, int, "
                       "int)") < 0)
        return NULL;
    Py_ssize_t shift;
    if (read_shift(args[7], &shift) < 0) return NULL;
    double bound = PyFloat_AsDouble(args[9]);
    if (bound == -1.0 && PyErr_Occurred()) return NULL;
    if (PyTuple_GET_SIZE(args[10]) != COLUMNS) {
        PyErr_SetString(PyExc_ValueError, "one bias per column (8) expected");
        return NULL;
    }
    double biases[COLUMNS];
    for (int c = 0; c < COLUMNS; c++) {
        biases[c] = PyFloat_AsDouble(PyTuple_GET_ITEM(args[10], c));
        if (biases[c] == -1.0 && PyErr_Occurred()) return NULL;
    }
    Py_ssize_t char_k = PyLong_AsSsize_t(args[11]), word_k = PyLong_AsSsize_t(args[12]);
    Py_ssize_t window = PyLong_AsSsize_t(args[13]);
    if ((char_k == -1 || word_k == -1 || window == -1) && PyErr_Occurred()) return NULL;
    Py_buffer wb;
    if (read_weights(args[8], shift, &wb) < 0) return NULL;
    PyObject *result = NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    const Py_UCS1 *in = PyUnicode_1BYTE_DATA(text);
    uint32_t *cp = PyMem_Malloc((size_t)(len + 2) * sizeof(uint32_t));
    Py_ssize_t *bounds = PyMem_Malloc((size_t)(len + 4) * sizeof(Py_ssize_t));
    uint64_t *hashes = NULL;
    if (cp == NULL || bounds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* prepare: " " + " ".join(text.lower().split()) + " ", cut to window + 2 characters */
    Py_ssize_t n = 0;
    int pending = 0;
    cp[n++] = ' ';
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS1 c = in[i];
        if (SPLIT_ASCII[c]) {
            pending = n > 1;
            continue;
        }
        if (pending) {
            cp[n++] = ' ';
            pending = 0;
        }
        cp[n++] = (c >= 'A' && c <= 'Z') ? (uint32_t)(c + 32) : c;
    }
    cp[n++] = ' ';
    if (n > window + 2) n = window + 2;
    /* word boundaries, as read_text finds them */
    Py_ssize_t n_bounds = 0;
    int prev = 0;
    for (Py_ssize_t t = 0; t < n; t++) {
        int cur = is_word(cp[t]);
        bounds[n_bounds] = t;
        n_bounds += cur ^ prev;
        prev = cur;
    }
    if (prev) bounds[n_bounds++] = n;
    HashLayout l = hash_layout(&h, n, n_bounds);
    Py_ssize_t n_words = l.n_words, n_uni = l.n_uni, n_bi = l.n_bi, n_char = l.n_char, n_word = l.n_word;
    hashes = PyMem_Malloc((size_t)(n_char + n_word + 1) * sizeof(uint64_t));
    if (hashes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double sums[2][COLUMNS];
    fill_hashes(cp, n, h.ks, h.char_salts, h.n_sizes, bounds, n_words, n_uni, n_bi, h.salt_w1, h.salt_w2, hashes, NULL, NULL, mod_simd());
    group_sums(hashes, n_char, n_char + n_word, (int)shift, (const uint16_t *)wb.buf, bound, sums);
    double char_scale = n_char ? 1.0 / (double)(n_char + char_k) : 0.0;
    double word_scale = n_word ? 1.0 / (double)(n_word + word_k) : 0.0;
    result = PyList_New(COLUMNS);
    if (result == NULL) goto done;
    for (int c = 0; c < COLUMNS; c++) {
        PyObject *value = PyFloat_FromDouble(column_score(biases[c], sums[0][c], char_scale, sums[1][c], word_scale));
        if (value == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, c, value);
    }
done:
    PyMem_Free(cp);
    PyMem_Free(bounds);
    PyMem_Free(hashes);
    PyBuffer_Release(&wb);
    return result;
}

/* By ASCII letter: 1 for the letters squeezed to two (rules._DOUBLING), 0 for those squeezed to one. */
static unsigned char DOUBLING[128];

/* squeeze_runs(text) -> str: rules._squeeze_runs_python(text) (every maximal run of three or more
 *   equal letters a-z becomes two of them, for letters that double in English, or one), as
 *   _ngram_kernel.squeeze_runs computes it, in a fraction of the time.
 * Why again here: that version reads and writes every character through PyUnicode_READ/WRITE with
 *   the kind chosen per character (~7 us per 2 KB; the benchmark's tickets, and any text with "www."
 *   or "zzz", pay it); this one walks typed arrays and copies the stretches between runs whole
 *   (~1 us). The result is built with PyUnicode_FromKindAndData, canonical like the reference's. */
#define SQUEEZE(TYPE)                                                                                  \
    do {                                                                                               \
        const TYPE *in = (const TYPE *)data;                                                           \
        TYPE *out = (TYPE *)buf;                                                                       \
        Py_ssize_t copied = 0, i = 0;                                                                  \
        while (i + 2 < n) {                                                                            \
            TYPE c = in[i + 2];                                                                        \
            if (in[i + 1] != c) { /* no run of three can hold both i + 1 and i + 2 */                  \
                i += 2;                                                                                \
                continue;                                                                              \
            }                                                                                          \
            if (in[i] != c || c < 'a' || c > 'z') {                                                    \
                i += 1;                                                                                \
                continue;                                                                              \
            }                                                                                          \
            Py_ssize_t j = i + 3; /* a run of c from i: find its end */                                \
            while (j < n && in[j] == c) j++;                                                           \
            Py_ssize_t keep = DOUBLING[c] ? 2 : 1;                                                     \
            memcpy(out + len, in + copied, (size_t)(i + keep - copied) * sizeof(TYPE));                \
            len += i + keep - copied;                                                                  \
            copied = j;                                                                                \
            i = j;                                                                                     \
        }                                                                                              \
        memcpy(out + len, in + copied, (size_t)(n - copied) * sizeof(TYPE));                           \
        len += n - copied;                                                                             \
    } while (0)

static PyObject *squeeze_runs(PyObject *self, PyObject *text) {
    (void)self;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "squeeze_runs(str)");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), len = 0;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    void *buf = PyMem_Malloc((size_t)(n > 0 ? n : 1) * (size_t)kind);
    if (buf == NULL) return PyErr_NoMemory();
    if (kind == PyUnicode_1BYTE_KIND)
        SQUEEZE(Py_UCS1);
    else if (kind == PyUnicode_2BYTE_KIND)
        SQUEEZE(Py_UCS2);
    else
        SQUEEZE(Py_UCS4);
    PyObject *result = PyUnicode_FromKindAndData(kind, buf, len);
    PyMem_Free(buf);
    return result;
}
#undef SQUEEZE

/* literals_present(text, filter, buckets) -> set[str] | None
 *   The literals (ASCII, two characters or more) that occur in text, in one pass. filter holds a
 *   byte per pair of leading characters: 0 when no literal starts with that pair, else 1 + the
 *   index of the bucket (a tuple in buckets) of the literals that do. A position whose pair starts
 *   no literal costs one table read; one that does is compared with that bucket's literals only.
 *   None when text is not ASCII (the caller searches with ``in``).
 * Why: the rules' prefilters (injection.prefilter) searched their literals one ``in`` at a time,
 *   each a pass over the whole text (~1 us per 2 KB). */
#define PAIR_FILTER_SIZE 65536
static PyObject *literals_present(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "literals_present(str, bytes, tuple[tuple[str, ...], ...])");
        return NULL;
    }
    PyObject *text = args[0], *buckets = args[2];
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;
#endif
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    Py_ssize_t n_buckets = PyTuple_GET_SIZE(buckets);
    if (n_buckets > 255) {
        PyErr_SetString(PyExc_ValueError, "at most 255 buckets");
        return NULL;
    }
    for (Py_ssize_t b = 0; b < n_buckets; b++) {
        PyObject *bucket = PyTuple_GET_ITEM(buckets, b);
        if (!PyTuple_Check(bucket)) {
            PyErr_SetString(PyExc_TypeError, "buckets must be tuples of str");
            return NULL;
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(bucket); k++) {
            PyObject *lit = PyTuple_GET_ITEM(bucket, k);
            if (!PyUnicode_Check(lit) || !PyUnicode_IS_ASCII(lit) || PyUnicode_GET_LENGTH(lit) < 2) {
                PyErr_SetString(PyExc_ValueError, "literals must be ASCII strings of two characters or more");
                return NULL;
            }
        }
    }
    Py_buffer fb;
    if (PyObject_GetBuffer(args[1], &fb, PyBUF_SIMPLE) < 0) return NULL;
    if (fb.len != PAIR_FILTER_SIZE) {
        PyBuffer_Release(&fb);
        PyErr_SetString(PyExc_ValueError, "literals_present: filter of the wrong size");
        return NULL;
    }
    const unsigned char *filter = (const unsigned char *)fb.buf;
    const unsigned char *in = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    PyObject *found = PySet_New(NULL);
    if (found == NULL) goto done;
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        unsigned slot = filter[(unsigned)in[i] << 8 | in[i + 1]];
        if (!slot || (Py_ssize_t)slot > n_buckets) continue;
        PyObject *bucket = PyTuple_GET_ITEM(buckets, slot - 1);
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(bucket); k++) {
            PyObject *lit = PyTuple_GET_ITEM(bucket, k);
            Py_ssize_t len = PyUnicode_GET_LENGTH(lit);
            if (len <= n - i && memcmp(PyUnicode_1BYTE_DATA(lit), in + i, (size_t)len) == 0
                && PySet_Add(found, lit) < 0) {
                Py_CLEAR(found);
                goto done;
            }
        }
    }
done:
    PyBuffer_Release(&fb);
    return found;
}

/* set_simd(enabled) -> bool: use the x86 paths the CPU has (AVX-512 hashing, F16C sums) or only the
 * portable C (what other CPUs run); returns whether any was in use before. For the tests, which
 * compare every path with _ngram_kernel; the module starts with them on. */
static PyObject *set_simd(PyObject *self, PyObject *flag) {
    (void)self;
    int want = PyObject_IsTrue(flag);
    if (want < 0) return NULL;
    int before = use_avx512 || use_f16c;
#if HAVE_X86_F16C
    use_avx512 = want && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    use_f16c = want && __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
#endif
    return PyBool_FromLong(before);
}

static PyMethodDef methods[] = {
    {"literals_present", (PyCFunction)(void (*)(void))literals_present, METH_FASTCALL,
     "The literals that occur in an ASCII text, in one pass (see rules.py)."},
    {"set_simd", (PyCFunction)set_simd, METH_O, "Use the AVX-512 hashing if the CPU has it; the previous setting."},
    {"ascii_scores16", (PyCFunction)(void (*)(void))ascii_scores16, METH_FASTCALL,
     "score_list of an ASCII text within one window, in one call (see classifier.py)."},
    {"squeeze_runs", (PyCFunction)squeeze_runs, METH_O, "Squeeze letter runs (see rules.py)."},
    {"hash_sums16", (PyCFunction)(void (*)(void))hash_sums16, METH_FASTCALL,
     "hash_bucket_sums from a float16 table (see classifier.py)."},
    {"sums16", (PyCFunction)(void (*)(void))sums16, METH_FASTCALL,
     "bucket_sums from a float16 table (see classifier.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_moderation_kernel",
    "The moderation classifier's n-gram sums from its float16 table; _ngram_kernel is the reference.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__moderation_kernel(void) {
    init_word_ascii();
    memset(SPLIT_ASCII, 0, sizeof(SPLIT_ASCII));
    for (const char *c = " \t\n\v\f\r\x1c\x1d\x1e\x1f"; *c; c++) SPLIT_ASCII[(unsigned char)*c] = 1;
    memset(DOUBLING, 0, sizeof(DOUBLING));
    for (const char *c = "bcdefglmnoprstz"; *c; c++) DOUBLING[(unsigned char)*c] = 1; /* rules._DOUBLING */
#if HAVE_X86_F16C
    __builtin_cpu_init();
    use_f16c = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    use_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#endif
    return PyModule_Create(&module);
}
