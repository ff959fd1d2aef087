/* Compiled per-character scans of the PII pattern engine, for ASCII texts only.
 *
 * Both functions return exactly what their Python references return (tests/unit/
 * test_pii_kernel.py compares them on generated, corpus and dataset texts) and None for a text
 * they do not handle (non-ASCII), so the caller takes the Python path there:
 *
 * - capitalised(text): capitalised.ascii_capitalised, the capitalised-word scan the
 *   gazetteers share (a regex match object, a slice and a lower() per word in Python);
 * - context_words(low, buckets): recognizers.RuleSet._context_words on the lower-cased text,
 *   the set of context words found at word starts (one Hyperscan pass with a Python callback
 *   per occurrence, then a Python loop, in the reference);
 * - words_before(text, end, span, count): recognizers._context_words, the words a match's
 *   context is looked up in (a slice, lower() and a regex findall per match in Python);
 * - literal_spans(text, literals): recognizers._Literals.finditer_plain, where a literal
 *   trigger's windows go (a Hyperscan pass with a Python callback per occurrence otherwise).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* [A-Za-z0-9_]: ASCII \w (regex, re and Hyperscan agree on ASCII text). */
static unsigned char WORD[256];
/* [A-Za-z0-9_-]: what continues a capitalised word, and what no capitalised word follows. */
static unsigned char WORD_OR_HYPHEN[256];

/* (start, end, lower-cased word) of every match of [A-Z][\w\-]* not preceded by [\w\-], as
 * ascii_capitalised: matches are taken left to right without overlap (as finditer does), a match
 * preceded by [\w\-] is skipped whole. */
static PyObject *capitalised(PyObject *self, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "capitalised: text must be str");
        return NULL;
    }
    if (PyUnicode_READY(text) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 'A' || c > 'Z') {
            i++;
            continue;
        }
        Py_ssize_t j = i + 1;
        while (j < n && WORD_OR_HYPHEN[s[j]]) j++;
        if (i == 0 || !WORD_OR_HYPHEN[s[i - 1]]) {
            PyObject *word = PyUnicode_New(j - i, 127);
            if (word == NULL) goto fail;
            Py_UCS1 *w = PyUnicode_1BYTE_DATA(word);
            for (Py_ssize_t k = i; k < j; k++) {
                unsigned char ch = s[k];
                w[k - i] = (ch >= 'A' && ch <= 'Z') ? (Py_UCS1)(ch + 32) : ch;
            }
            PyObject *item = Py_BuildValue("(nnN)", i, j, word);
            if (item == NULL) goto fail;
            int rc = PyList_Append(out, item);
            Py_DECREF(item);
            if (rc < 0) goto fail;
        }
        i = j;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* The context words occurring in ``low`` as RuleSet._context_words finds them: at each position
 * not inside the last word taken and not after an ASCII word character, the longest word that
 * occurs there is taken. ``buckets``: a tuple of 128 tuples, bucket c the words starting with
 * character c, longest first (words holding a non-ASCII character never occur in an ASCII
 * text and are passed over). */
static PyObject *context_words(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[1]) != 128) {
        PyErr_SetString(PyExc_TypeError, "context_words(low: str, buckets: tuple of 128 tuples)");
        return NULL;
    }
    PyObject *low = args[0], *buckets = args[1];
    for (Py_ssize_t c = 0; c < 128; c++) {
        if (!PyTuple_Check(PyTuple_GET_ITEM(buckets, c))) {
            PyErr_SetString(PyExc_TypeError, "context_words: every bucket must be a tuple");
            return NULL;
        }
    }
    if (PyUnicode_READY(low) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(low)) Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(low);
    Py_ssize_t n = PyUnicode_GET_LENGTH(low);
    PyObject *out = PySet_New(NULL);
    if (out == NULL) return NULL;
    Py_ssize_t p = 0;
    while (p < n) {
        if (p > 0 && WORD[s[p - 1]]) {
            p++;
            continue;
        }
        PyObject *bucket = PyTuple_GET_ITEM(buckets, s[p]);
        Py_ssize_t taken = 0;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(bucket); k++) {
            PyObject *w = PyTuple_GET_ITEM(bucket, k);
            if (!PyUnicode_Check(w) || PyUnicode_READY(w) < 0 || PyUnicode_GET_LENGTH(w) == 0) {
                PyErr_SetString(PyExc_TypeError, "context_words: buckets hold non-empty strings");
                Py_DECREF(out);
                return NULL;
            }
            if (!PyUnicode_IS_ASCII(w)) continue;
            Py_ssize_t len = PyUnicode_GET_LENGTH(w);
            const unsigned char *ws = PyUnicode_1BYTE_DATA(w);
            /* the first character is the bucket's; most words differ at the second */
            if (len <= n - p && (len == 1 || ws[1] == s[p + 1]) && memcmp(s + p, ws, (size_t)len) == 0) {
                if (PySet_Add(out, w) < 0) {
                    Py_DECREF(out);
                    return NULL;
                }
                taken = len;
                break;
            }
        }
        p += taken ? taken : 1;
    }
    return out;
}

/* The last ``count`` words (runs of ASCII \w, lower-cased) of text[max(0, end - span):end], as
 * recognizers._context_words: ``_WORD.findall(text[max(0, end - span):end].lower())[-count:]``
 * (a word cut by the window's start counts from there). */
static PyObject *words_before(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "words_before(text: str, end: int, span: int, count: int)");
        return NULL;
    }
    Py_ssize_t end = PyLong_AsSsize_t(args[1]);
    Py_ssize_t span = PyLong_AsSsize_t(args[2]);
    Py_ssize_t count = PyLong_AsSsize_t(args[3]);
    if ((end == -1 || span == -1 || count == -1) && PyErr_Occurred()) return NULL;
    PyObject *text = args[0];
    if (PyUnicode_READY(text) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (end < 0 || end > n || span < 0 || count < 0 || count > 64) {
        PyErr_SetString(PyExc_ValueError, "words_before: end within the text, span >= 0, count 0-64");
        return NULL;
    }
    const unsigned char *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t lo = end - span > 0 ? end - span : 0;
    /* walk back from the end: the last ``count`` words, then build them in text order */
    Py_ssize_t starts[64], ends[64];
    Py_ssize_t found = 0, i = end;
    while (found < count && i > lo) {
        while (i > lo && !WORD[s[i - 1]]) i--;
        if (i == lo) break;
        Py_ssize_t e = i;
        while (i > lo && WORD[s[i - 1]]) i--;
        starts[found] = i;
        ends[found] = e;
        found++;
    }
    PyObject *out = PyList_New(found);
    if (out == NULL) return NULL;
    for (Py_ssize_t k = 0; k < found; k++) {
        Py_ssize_t a = starts[found - 1 - k], b = ends[found - 1 - k];
        PyObject *word = PyUnicode_New(b - a, 127);
        if (word == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        Py_UCS1 *w = PyUnicode_1BYTE_DATA(word);
        for (Py_ssize_t j = a; j < b; j++) {
            unsigned char ch = s[j];
            w[j - a] = (ch >= 'A' && ch <= 'Z') ? (Py_UCS1)(ch + 32) : ch;
        }
        PyList_SET_ITEM(out, k, word);
    }
    return out;
}

static int compare_spans(const void *a, const void *b) {
    const Py_ssize_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    if (x[1] != y[1]) return x[1] < y[1] ? -1 : 1;
    return 0;
}

/* (start, end) of every occurrence of every literal in ``text`` (overlaps and repeats included),
 * sorted, as recognizers._Literals.finditer_plain: ``str.find`` from each occurrence's start + 1.
 * Literals holding a non-ASCII character never occur in an ASCII text; an empty one occurs at
 * every position (as ``str.find`` says). */
static PyObject *literal_spans(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "literal_spans(text: str, literals: tuple of str)");
        return NULL;
    }
    PyObject *text = args[0], *literals = args[1];
    Py_ssize_t count = PyTuple_GET_SIZE(literals);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *lit = PyTuple_GET_ITEM(literals, k);
        if (!PyUnicode_Check(lit) || PyUnicode_READY(lit) < 0) {
            PyErr_SetString(PyExc_TypeError, "literal_spans: literals must be str");
            return NULL;
        }
    }
    if (PyUnicode_READY(text) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    const char *s = (const char *)PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t cap = 64, used = 0;
    Py_ssize_t *spans = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)cap);
    if (spans == NULL) return PyErr_NoMemory();
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *lit = PyTuple_GET_ITEM(literals, k);
        if (!PyUnicode_IS_ASCII(lit)) continue;
        Py_ssize_t len = PyUnicode_GET_LENGTH(lit);
        const char *l = (const char *)PyUnicode_1BYTE_DATA(lit);
        for (Py_ssize_t i = 0; i + len <= n; i++) {
            if (len > 0) {
                const char *hit = memchr(s + i, l[0], (size_t)(n - len - i + 1));
                if (hit == NULL) break;
                i = hit - s;
                if (memcmp(s + i, l, (size_t)len) != 0) continue;
            }
            if (used == cap) {
                cap *= 2;
                Py_ssize_t *grown = PyMem_Realloc(spans, sizeof(Py_ssize_t) * 2 * (size_t)cap);
                if (grown == NULL) {
                    PyMem_Free(spans);
                    return PyErr_NoMemory();
                }
                spans = grown;
            }
            spans[2 * used] = i;
            spans[2 * used + 1] = i + len;
            used++;
        }
    }
    qsort(spans, (size_t)used, sizeof(Py_ssize_t) * 2, compare_spans);
    PyObject *out = PyList_New(used);
    if (out == NULL) {
        PyMem_Free(spans);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < used; k++) {
        PyObject *item = Py_BuildValue("(nn)", spans[2 * k], spans[2 * k + 1]);
        if (item == NULL) {
            PyMem_Free(spans);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, item);
    }
    PyMem_Free(spans);
    return out;
}

static PyMethodDef methods[] = {
    {"capitalised", (PyCFunction)capitalised, METH_O,
     "capitalised.ascii_capitalised of an ASCII text; None for any other text."},
    {"context_words", (PyCFunction)(void (*)(void))context_words, METH_FASTCALL,
     "RuleSet._context_words of an ASCII lower-cased text; None for any other text."},
    {"words_before", (PyCFunction)(void (*)(void))words_before, METH_FASTCALL,
     "recognizers._context_words of an ASCII text; None for any other text."},
    {"literal_spans", (PyCFunction)(void (*)(void))literal_spans, METH_FASTCALL,
     "recognizers._Literals.finditer_plain spans of an ASCII text; None for any other text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pii_kernel",
    "Compiled per-character scans of the PII pattern engine; the Python versions are the reference.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pii_kernel(void) {
    const char *word = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
    memset(WORD, 0, sizeof(WORD));
    memset(WORD_OR_HYPHEN, 0, sizeof(WORD_OR_HYPHEN));
    for (const char *c = word; *c; c++) WORD[(unsigned char)*c] = WORD_OR_HYPHEN[(unsigned char)*c] = 1;
    WORD_OR_HYPHEN['-'] = 1;
    return PyModule_Create(&module);
}
