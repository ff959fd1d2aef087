/*
 * Exact tiktoken token counts without a full encode (proxy.tokens.fast_count, issue 17).
 *
 * Why: tiktoken splits a text with its pre-tokeniser regex, then byte-pair-encodes each piece on its
 * own, so a text's token count is the sum of its pieces' counts and a piece's count depends only on
 * its bytes. Counting a 2 KB ticket with ``encode_ordinary`` costs ~100 us, most of it the regex
 * (a backtracking engine, because of the ``\s+(?!\S)`` look-ahead). Here the pre-tokeniser of
 * cl100k_base and o200k_base is a hand-written scanner over ASCII, and each piece's count comes from
 * a cache of piece bytes -> count, filled by tiktoken itself (``encode_single_piece``) on a miss.
 *
 * Exactness: the scanner decides each piece from the characters it reads; the moment it reads a
 * non-ASCII character (where Unicode classes, case folding and the Unicode version of tiktoken's
 * regex engine would matter) it gives up that piece, and tiktoken's own ``encode_ordinary`` counts the
 * text from that piece's start up to the next position that is a piece boundary whatever the
 * characters around it are: just after a CR or LF followed by an ASCII character that is neither
 * whitespace nor '/', or at a space after an ASCII character that is not whitespace (no
 * alternative of either pattern can continue a piece across such a point;
 * proxy/tokens/fast_count.py gives the argument). Splitting there is exact because the patterns
 * have no look-behind: the pieces from a boundary on depend only on the text from it.
 * tests/unit/test_token_fast_count.py compares every count with tiktoken's over the datasets and
 * adversarial Unicode.
 *
 * Bounded worst case: a miss costs a call into tiktoken (~1 us), so when misses exceed a quarter of
 * the pieces (plus a start allowance that lets a cold cache warm up) the rest of the text is
 * counted by ``encode_ordinary`` in one call; so it is when the text keeps handing non-ASCII
 * stretches over (more than 4 plus one per 16 pieces counted here). The cache is keyed with CPython's keyed SipHash
 * (``_Py_HashBytes``), probes a bounded number of slots and is emptied when full, so its memory is
 * fixed (about 2 MB per encoding) and clients cannot aim collisions at it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Character classes of ASCII code points (bit flags; 0 for "none of them"). */
#define C_LOWER 1u
#define C_UPPER 2u
#define C_DIGIT 4u
#define C_WS 8u     /* Unicode White_Space among ASCII: \t \n \v \f \r and space */
#define C_NL 16u    /* \r \n */
#define C_OTHER 32u /* neither whitespace, letter nor digit: punctuation, symbols, controls */
#define C_PREFIX 64u /* [^\r\n\p{L}\p{N}]: OTHER and whitespace other than \r \n */
#define C_SLASH 128u
#define C_LETTER (C_LOWER | C_UPPER)

#define ENC_CL100K 0
#define ENC_O200K 1

#define TABLE_BITS 16
#define TABLE_SLOTS (1u << TABLE_BITS)
#define TABLE_MAX_USED (TABLE_SLOTS / 2)
#define MAX_PROBES 16
#define MAX_CACHED_LEN 48
#define ARENA_BYTES (TABLE_MAX_USED * 16)
#define MISS_ALLOWANCE 48
/* Stretches handed to tiktoken before the rest of a text goes to it in one call: each hand-over
 * is a Python call (a few us), so text that is mostly non-ASCII is cheaper encoded in one go. */
#define HANDOVER_ALLOWANCE 4

static unsigned char CLS[128];

typedef struct {
    uint64_t hash;
    uint32_t offset; /* into the arena */
    uint16_t len;    /* 0: empty slot */
    uint16_t count;
} Slot;

typedef struct {
    PyObject_HEAD
    int encoding;
    PyObject *encode_piece; /* bytes -> sequence of token ids (tiktoken's encode_single_piece) */
    PyObject *encode_text;  /* str -> sequence of token ids (tiktoken's encode_ordinary) */
    Slot *slots;
    char *arena;
    size_t arena_used;
    size_t used;
    unsigned long long hits, misses, fallback_chars, resets;
} Counter;

/* The text being scanned: any PyUnicode kind; ``bad`` is set when a non-ASCII character was read. */
typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
    int bad;
} Text;

static inline unsigned cls_at(Text *t, Py_ssize_t j) {
    if (j >= t->n) return 0;
    Py_UCS4 c = PyUnicode_READ(t->kind, t->data, j);
    if (c >= 128) {
        t->bad = 1;
        return 0;
    }
    return CLS[c];
}

static inline Py_UCS4 char_at(Text *t, Py_ssize_t j) { return PyUnicode_READ(t->kind, t->data, j); }

static inline Py_ssize_t run_of(Text *t, Py_ssize_t j, unsigned mask) {
    while (cls_at(t, j) & mask) j++;
    return j;
}

/* The last \r or \n in [i, w), or -1. */
static inline Py_ssize_t last_newline(Text *t, Py_ssize_t i, Py_ssize_t w) {
    for (Py_ssize_t q = w - 1; q >= i; q--) {
        if (CLS[char_at(t, q)] & C_NL) return q;
    }
    return -1;
}

/* The ASCII letter at j lower-cased, or 0 when j holds no ASCII letter (bad is set if non-ASCII). */
static inline Py_UCS4 letter_lower(Text *t, Py_ssize_t j) {
    if (!(cls_at(t, j) & C_LETTER)) return 0;
    return char_at(t, j) | 0x20;
}

/* cl100k_base:
 *   '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
 *   |\s++$|\s*[\r\n]|\s+(?!\S)|\s
 * The end of the piece that starts at i, or -1 when a non-ASCII character was read. */
static Py_ssize_t next_cl100k(Text *t, Py_ssize_t i) {
    unsigned c = cls_at(t, i);
    if (t->bad) return -1;
    Py_UCS4 ch = char_at(t, i);
    if (ch == '\'') {
        Py_UCS4 l1 = letter_lower(t, i + 1);
        if (t->bad) return -1;
        if (l1 == 's' || l1 == 'd' || l1 == 'm' || l1 == 't') return i + 2;
        if (l1 == 'l' || l1 == 'v' || l1 == 'r') {
            Py_UCS4 l2 = letter_lower(t, i + 2);
            if (t->bad) return -1;
            if ((l1 == 'l' && l2 == 'l') || (l1 != 'l' && l2 == 'e')) return i + 3;
        }
    }
    if (c & C_LETTER) {
        Py_ssize_t end = run_of(t, i + 1, C_LETTER);
        return t->bad ? -1 : end;
    }
    if (c & C_PREFIX) {
        unsigned c1 = cls_at(t, i + 1);
        if (t->bad) return -1;
        if (c1 & C_LETTER) {
            Py_ssize_t end = run_of(t, i + 2, C_LETTER);
            return t->bad ? -1 : end;
        }
    }
    if (c & C_DIGIT) {
        Py_ssize_t j = i + 1;
        while (j < i + 3 && (cls_at(t, j) & C_DIGIT)) j++;
        return t->bad ? -1 : j;
    }
    Py_ssize_t j = ch == ' ' ? i + 1 : i;
    unsigned cj = j == i ? c : cls_at(t, j);
    if (t->bad) return -1;
    if (cj & C_OTHER) {
        Py_ssize_t end = run_of(t, run_of(t, j + 1, C_OTHER), C_NL);
        return t->bad ? -1 : end;
    }
    if (c & C_WS) {
        Py_ssize_t w = run_of(t, i + 1, C_WS);
        if (t->bad) return -1;
        if (w == t->n) return w; /* \s++$ */
        Py_ssize_t q = last_newline(t, i, w);
        if (q >= 0) return q + 1; /* \s*[\r\n] */
        if (w - i >= 2) return w - 1; /* \s+(?!\S) */
        return i + 1;                 /* \s */
    }
    return -1; /* unreachable: every ASCII class is handled above; let tiktoken decide */
}

/* o200k_base:
 *   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *   |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *   |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Among ASCII the first two are: an optional prefix, upper-case letters, then lower-case ones (the
 * first when there is at least one lower-case letter, else the second), then a contraction. */
static Py_ssize_t next_o200k(Text *t, Py_ssize_t i) {
    unsigned c = cls_at(t, i);
    if (t->bad) return -1;
    Py_UCS4 ch = char_at(t, i);
    Py_ssize_t j = i;
    unsigned cj = c;
    if (c & C_PREFIX) {
        j = i + 1;
        cj = cls_at(t, j);
        if (t->bad) return -1;
    }
    if (cj & C_LETTER) {
        Py_ssize_t end = run_of(t, run_of(t, j, C_UPPER), C_LOWER);
        if (t->bad) return -1;
        if (cls_at(t, end) & C_OTHER && char_at(t, end) == '\'') {
            Py_UCS4 l1 = letter_lower(t, end + 1);
            if (t->bad) return -1;
            if (l1 == 's' || l1 == 't' || l1 == 'm' || l1 == 'd') return end + 2;
            if (l1 == 'r' || l1 == 'v' || l1 == 'l') {
                Py_UCS4 l2 = letter_lower(t, end + 2);
                if (t->bad) return -1;
                if ((l1 == 'l' && l2 == 'l') || (l1 != 'l' && l2 == 'e')) return end + 3;
            }
        }
        return t->bad ? -1 : end;
    }
    if (c & C_DIGIT) {
        Py_ssize_t k = i + 1;
        while (k < i + 3 && (cls_at(t, k) & C_DIGIT)) k++;
        return t->bad ? -1 : k;
    }
    j = ch == ' ' ? i + 1 : i;
    cj = j == i ? c : cls_at(t, j);
    if (t->bad) return -1;
    if (cj & C_OTHER) {
        Py_ssize_t end = run_of(t, run_of(t, j + 1, C_OTHER), C_NL | C_SLASH);
        return t->bad ? -1 : end;
    }
    if (c & C_WS) {
        Py_ssize_t w = run_of(t, i + 1, C_WS);
        if (t->bad) return -1;
        Py_ssize_t q = last_newline(t, i, w);
        if (q >= 0) return q + 1;  /* \s*[\r\n]+ */
        if (w == t->n) return w;   /* \s+(?!\S) at the end */
        if (w - i >= 2) return w - 1; /* \s+(?!\S) */
        return w;                     /* \s+ */
    }
    return -1;
}

/* The first position after ``from`` where a piece boundary is certain whatever the characters
 * around it: just after \r or \n, before an ASCII character that is not whitespace nor '/'; or
 * at a space that follows an ASCII character other than whitespace (no piece takes a space after
 * a non-space character: spaces only start letter and punctuation pieces). */
static Py_ssize_t next_safe_boundary(Text *t, Py_ssize_t from) {
    for (Py_ssize_t p = from + 1; p < t->n; p++) {
        Py_UCS4 prev = char_at(t, p - 1);
        Py_UCS4 c = char_at(t, p);
        if (prev == '\n' || prev == '\r') {
            if (c < 128 && !(CLS[c] & C_WS) && c != '/') return p;
        } else if (c == ' ' && prev < 128 && !(CLS[prev] & C_WS)) {
            return p;
        }
    }
    return t->n;
}

static void table_reset(Counter *self) {
    memset(self->slots, 0, sizeof(Slot) * TABLE_SLOTS);
    self->arena_used = 0;
    self->used = 0;
    self->resets++;
}

/* The cached count of ``piece`` (ASCII bytes), or -1. */
static inline int table_get(Counter *self, const char *piece, Py_ssize_t len, uint64_t hash) {
    size_t mask = TABLE_SLOTS - 1;
    size_t at = (size_t)hash & mask;
    for (int probe = 0; probe < MAX_PROBES; probe++, at = (at + 1) & mask) {
        Slot *s = &self->slots[at];
        if (s->len == 0) return -1;
        if (s->hash == hash && s->len == len && memcmp(self->arena + s->offset, piece, (size_t)len) == 0)
            return s->count;
    }
    return -1;
}

static inline void table_put(Counter *self, const char *piece, Py_ssize_t len, uint64_t hash, long count) {
    if (count > UINT16_MAX) return;
    if (self->used >= TABLE_MAX_USED || self->arena_used + (size_t)len > ARENA_BYTES) table_reset(self);
    size_t mask = TABLE_SLOTS - 1;
    size_t at = (size_t)hash & mask;
    for (int probe = 0; probe < MAX_PROBES; probe++, at = (at + 1) & mask) {
        Slot *s = &self->slots[at];
        if (s->len != 0) continue;
        memcpy(self->arena + self->arena_used, piece, (size_t)len);
        s->hash = hash;
        s->offset = (uint32_t)self->arena_used;
        s->len = (uint16_t)len;
        s->count = (uint16_t)count;
        self->arena_used += (size_t)len;
        self->used++;
        return;
    }
    /* A long probe run: leave it uncached (bounded work per lookup matters more). */
}

static Py_ssize_t len_of_result(PyObject *result) {
    if (result == NULL) return -1;
    Py_ssize_t n = PyObject_Length(result);
    Py_DECREF(result);
    return n;
}

/* Tokens of the piece text[i:end] (ASCII), from the cache or from tiktoken. */
static Py_ssize_t piece_count(Counter *self, Text *t, Py_ssize_t i, Py_ssize_t end, int *missed) {
    Py_ssize_t len = end - i;
    char local[MAX_CACHED_LEN];
    const char *bytes;
    PyObject *owned = NULL;
    if (t->kind == PyUnicode_1BYTE_KIND) {
        bytes = (const char *)t->data + i;
    } else if (len <= MAX_CACHED_LEN) {
        for (Py_ssize_t k = 0; k < len; k++) local[k] = (char)char_at(t, i + k);
        bytes = local;
    } else {
        owned = PyBytes_FromStringAndSize(NULL, len);
        if (owned == NULL) return -1;
        char *dst = PyBytes_AS_STRING(owned);
        for (Py_ssize_t k = 0; k < len; k++) dst[k] = (char)char_at(t, i + k);
        bytes = dst;
    }
    uint64_t hash = 0;
    if (len <= MAX_CACHED_LEN) {
        hash = (uint64_t)_Py_HashBytes(bytes, len);
        int found = table_get(self, bytes, len, hash);
        if (found >= 0) {
            self->hits++;
            return found;
        }
    }
    *missed = 1;
    self->misses++;
    if (owned == NULL) {
        owned = PyBytes_FromStringAndSize(bytes, len);
        if (owned == NULL) return -1;
    }
    /* The call may release the GIL: nothing of the table is held across it. */
    Py_ssize_t count = len_of_result(PyObject_CallOneArg(self->encode_piece, owned));
    if (count >= 0 && len <= MAX_CACHED_LEN) table_put(self, PyBytes_AS_STRING(owned), len, hash, count);
    Py_DECREF(owned);
    return count;
}

/* tiktoken's count of text[i:end]. */
static Py_ssize_t fallback_count(Counter *self, PyObject *text, Py_ssize_t i, Py_ssize_t end) {
    self->fallback_chars += (unsigned long long)(end - i);
    PyObject *part = PyUnicode_Substring(text, i, end);
    if (part == NULL) return -1;
    Py_ssize_t count = len_of_result(PyObject_CallOneArg(self->encode_text, part));
    Py_DECREF(part);
    return count;
}

/* A PieceCounter made with __new__ alone (no __init__) has no table and no tiktoken to call. */
static int check_ready(Counter *self) {
    if (self->slots != NULL && self->encode_piece != NULL && self->encode_text != NULL) return 0;
    PyErr_SetString(PyExc_RuntimeError, "PieceCounter was not initialised");
    return -1;
}

static PyObject *Counter_count(Counter *self, PyObject *text) {
    if (check_ready(self) < 0) return NULL;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "count() takes a str");
        return NULL;
    }
    if (PyUnicode_READY(text) < 0) return NULL;
    Text t = {PyUnicode_KIND(text), PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), 0};
    Py_ssize_t (*next_piece)(Text *, Py_ssize_t) = self->encoding == ENC_O200K ? next_o200k : next_cl100k;
    long long total = 0;
    Py_ssize_t pieces = 0, misses = 0, handovers = 0, i = 0;
    while (i < t.n) {
        t.bad = 0;
        Py_ssize_t end = next_piece(&t, i);
        if (end < 0) {
            /* Non-ASCII read: tiktoken counts up to the next certain boundary. */
            Py_ssize_t stop = next_safe_boundary(&t, i);
            if (++handovers > HANDOVER_ALLOWANCE + pieces / 16) stop = t.n; /* mostly non-ASCII */
            Py_ssize_t part = fallback_count(self, text, i, stop);
            if (part < 0) return NULL;
            total += part;
            i = stop;
            continue;
        }
        int missed = 0;
        Py_ssize_t count = piece_count(self, &t, i, end, &missed);
        if (count < 0) return NULL;
        total += count;
        pieces++;
        misses += missed;
        i = end;
        if (missed && misses > MISS_ALLOWANCE + pieces / 4 && i < t.n) {
            /* Mostly new pieces: one encode of the rest is cheaper than a call per piece. */
            Py_ssize_t part = fallback_count(self, text, i, t.n);
            if (part < 0) return NULL;
            total += part;
            break;
        }
    }
    return PyLong_FromLongLong(total);
}

static PyObject *Counter_stats(Counter *self, PyObject *Py_UNUSED(ignored)) {
    if (check_ready(self) < 0) return NULL;
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:n}", "hits", self->hits, "misses", self->misses,
                         "fallback_chars", self->fallback_chars, "resets", self->resets, "entries",
                         (Py_ssize_t)self->used);
}

static PyObject *Counter_clear(Counter *self, PyObject *Py_UNUSED(ignored)) {
    if (check_ready(self) < 0) return NULL;
    table_reset(self);
    self->hits = self->misses = self->fallback_chars = self->resets = 0;
    Py_RETURN_NONE;
}

static int Counter_init(Counter *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"encoding", "encode_piece", "encode_text", NULL};
    const char *name;
    PyObject *piece, *text;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sOO", kwlist, &name, &piece, &text)) return -1;
    if (strcmp(name, "cl100k_base") == 0) {
        self->encoding = ENC_CL100K;
    } else if (strcmp(name, "o200k_base") == 0) {
        self->encoding = ENC_O200K;
    } else {
        PyErr_Format(PyExc_ValueError, "no pre-tokeniser for encoding %s", name);
        return -1;
    }
    if (!PyCallable_Check(piece) || !PyCallable_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "encode_piece and encode_text must be callable");
        return -1;
    }
    Py_INCREF(piece);
    Py_XSETREF(self->encode_piece, piece);
    Py_INCREF(text);
    Py_XSETREF(self->encode_text, text);
    if (self->slots == NULL) {
        self->slots = PyMem_Calloc(TABLE_SLOTS, sizeof(Slot));
        self->arena = PyMem_Malloc(ARENA_BYTES);
        if (self->slots == NULL || self->arena == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    table_reset(self);
    self->resets = 0;
    return 0;
}

static void Counter_dealloc(Counter *self) {
    Py_XDECREF(self->encode_piece);
    Py_XDECREF(self->encode_text);
    PyMem_Free(self->slots);
    PyMem_Free(self->arena);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Counter_methods[] = {
    {"count", (PyCFunction)Counter_count, METH_O, "Exact token count of a str (tiktoken's encode_ordinary)."},
    {"stats", (PyCFunction)Counter_stats, METH_NOARGS, "Cache hits, misses, fallback characters, resets."},
    {"clear", (PyCFunction)Counter_clear, METH_NOARGS, "Empty the piece cache and zero the stats."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxy.tokens._piece_counter.PieceCounter",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PieceCounter(encoding, encode_piece, encode_text): exact token counts from a piece cache.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_methods = Counter_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_piece_counter",
    "Exact tiktoken token counts from a pre-tokeniser over ASCII and a piece cache.", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__piece_counter(void) {
    for (int c = 0; c < 128; c++) {
        unsigned k;
        if (c >= 'a' && c <= 'z') k = C_LOWER;
        else if (c >= 'A' && c <= 'Z') k = C_UPPER;
        else if (c >= '0' && c <= '9') k = C_DIGIT;
        else if (c == '\n' || c == '\r') k = C_WS | C_NL;
        else if (c == '\t' || c == '\v' || c == '\f' || c == ' ') k = C_WS | C_PREFIX;
        else k = C_OTHER | C_PREFIX;
        if (c == '/') k |= C_SLASH;
        CLS[c] = (unsigned char)k;
    }
    if (PyType_Ready(&CounterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&CounterType);
    if (PyModule_AddObject(m, "PieceCounter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(&CounterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
