/*
 * Compiled helpers of the injection detector's indirect path (proxy.detectors.injection.indirect).
 *
 * Why C: cutting a 2 KB document into its ~20 segments (lines, then sentences, then chunks of at
 * most max_segment characters, stripped) cost ~20 us in Python, a Python-level branch, slice, strip
 * and named tuple per segment; one pass here over the code points takes ~2 us. The output is that of
 * the Python implementation (indirect._segments_python), which stays as the fallback when this module
 * is not built and as the reference tests/unit/test_injection_kernel.py compares against:
 *
 *   a cut is a line break, or one of . ! ? and the CJK stops followed by whitespace other than a line
 *   break (the stop stays with the sentence, the whitespace goes), or a CJK stop followed by none;
 *   each piece between cuts is chunked every max_segment characters and each chunk stripped, blank
 *   chunks dropped; a piece that starts right after a sentence end's whitespace and ends at a stop is
 *   taken as it is (it starts at a non-blank character and is no longer than max_segment).
 *
 * Whitespace is Py_UNICODE_ISSPACE, what re's \s and str.strip() use.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static inline int is_stop(Py_UCS4 c) {
    return c == '.' || c == '!' || c == '?' || c == 0x3002 || c == 0xFF01 || c == 0xFF1F;
}

static inline int is_cjk_stop(Py_UCS4 c) { return c == 0x3002 || c == 0xFF01 || c == 0xFF1F; }

static inline int is_blank(Py_UCS4 c) { return Py_UNICODE_ISSPACE(c) && c != '\n'; }

/* A ``cls(text[start:end], start, end)`` built as the tuple subclass it is (a named tuple), without
 * calling its Python __new__: what tuple's own constructor does for a subclass. */
static PyObject *make_segment(PyTypeObject *cls, PyObject *text, Py_ssize_t start, Py_ssize_t end) {
    PyObject *piece = PyUnicode_Substring(text, start, end);
    if (piece == NULL) return NULL;
    PyObject *a = PyLong_FromSsize_t(start);
    PyObject *b = PyLong_FromSsize_t(end);
    PyObject *seg = cls->tp_alloc(cls, 3);
    if (a == NULL || b == NULL || seg == NULL) {
        Py_DECREF(piece);
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_XDECREF(seg);
        return NULL;
    }
    PyTuple_SET_ITEM(seg, 0, piece);
    PyTuple_SET_ITEM(seg, 1, a);
    PyTuple_SET_ITEM(seg, 2, b);
    return seg;
}

static int append_segment(PyObject *out, PyTypeObject *cls, PyObject *text, Py_ssize_t start, Py_ssize_t end) {
    PyObject *seg = make_segment(cls, text, start, end);
    if (seg == NULL) return -1;
    int rc = PyList_Append(out, seg);
    Py_DECREF(seg);
    return rc;
}

/* The stripped, non-blank chunks of text[start:end], max_segment characters each (``_pieces``). */
static int pieces(PyObject *out, PyTypeObject *cls, PyObject *text, int kind, const void *data, Py_ssize_t start,
                  Py_ssize_t end, Py_ssize_t max_segment) {
    for (Py_ssize_t k = start; k < end;) {
        Py_ssize_t chunk_end = end - k > max_segment ? k + max_segment : end;
        Py_ssize_t lo = k, hi = chunk_end;
        while (lo < hi && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, lo))) lo++;
        while (hi > lo && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, hi - 1))) hi--;
        if (hi > lo && append_segment(out, cls, text, lo, hi) < 0) return -1;
        k = chunk_end;
    }
    return 0;
}

static PyObject *segments(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *text;
    Py_ssize_t max_segment;
    PyTypeObject *cls;
    if (!PyArg_ParseTuple(args, "UnO!", &text, &max_segment, &PyType_Type, &cls)) return NULL;
    if (max_segment < 1) {
        PyErr_SetString(PyExc_ValueError, "max_segment must be positive");
        return NULL;
    }
    if (!PyType_IsSubtype(cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the segment class must be a tuple subclass");
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t cut = 0;
    int clean = 0;
    Py_ssize_t p = 0;
    while (p < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, p);
        Py_ssize_t end, nxt;
        int stop;
        if (c == '\n') {
            end = p;
            nxt = p + 1;
            stop = 0;
        } else if (is_stop(c)) {
            Py_ssize_t q = p + 1;
            while (q < n && is_blank(PyUnicode_READ(kind, data, q))) q++;
            if (q > p + 1) {
                end = p + 1;
                nxt = q;
            } else if (is_cjk_stop(c)) {
                end = nxt = p + 1;
            } else {
                p++;
                continue; /* . ! ? not followed by whitespace: no cut */
            }
            stop = 1;
        } else {
            p++;
            continue;
        }
        int rc;
        if (end - cut > max_segment || !(clean && stop))
            rc = pieces(out, cls, text, kind, data, cut, end, max_segment);
        else
            rc = append_segment(out, cls, text, cut, end);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
        cut = nxt;
        clean = stop;
        p = nxt;
    }
    if (pieces(out, cls, text, kind, data, cut, n, max_segment) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* --- pre-checks of the normaliser's views and decoders (views.py, decoders.py) --------------------- */

static inline Py_UCS4 at(int kind, const void *data, Py_ssize_t n, Py_ssize_t i) {
    return i >= 0 && i < n ? PyUnicode_READ(kind, data, i) : 0;
}

/* Classes of the ASCII characters (bit flags), filled at import: the loops below look characters
 * up here instead of calling the Unicode database for each (2 KB: ~9 -> ~2 us). */
#define C_ALNUM 1  /* [A-Za-z0-9] */
#define C_B64 2    /* decoders._B64_CHARS */
#define C_HEXSEP 4 /* decoders._HEX_SEP_CHARS */
#define C_SEP 8    /* views._SEP_GATES' separators */
#define C_HEX 16   /* [0-9A-Fa-f] */
static unsigned char CLASS[128];

static void fill_classes(void) {
    for (int c = 1; c < 128; c++) {
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'), digit = c >= '0' && c <= '9';
        int hex = digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        CLASS[c] = (unsigned char)(((alpha || digit) ? C_ALNUM : 0) |
                                   ((alpha || digit || c == '+' || c == '/' || c == '_' || c == '-') ? C_B64 : 0) |
                                   ((hex || c == ' ' || c == ',' || c == ':') ? C_HEXSEP : 0) |
                                   (strchr(".-_*|+~", c) != NULL ? C_SEP : 0) | (hex ? C_HEX : 0));
    }
}

/* re's [^\W_] on a str pattern: Py_UNICODE_ISALNUM (the underscore is not alphanumeric); 0 (no
 * character: before or after the text) is none. */
static inline int alnum(Py_UCS4 c) {
    if (c < 128) return CLASS[c] & C_ALNUM;
    return Py_UNICODE_ISALNUM(c);
}

/* views._maybe_spaced: _SPACE_GATE on " " + text + " " (a space, a letter or digit, a space, a letter
 * or digit not followed by another), or one of _SEP_GATES on text (sep, letter, sep, letter). */
static PyObject *maybe_spaced(PyObject *Py_UNUSED(self), PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "maybe_spaced() needs a str");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    if (PyUnicode_IS_ASCII(arg)) { /* the common case, with the table alone (same tests as below) */
        const Py_UCS1 *t = PyUnicode_1BYTE_DATA(arg);
        for (Py_ssize_t i = 0; i + 2 < n; i++) {
            unsigned char cls = CLASS[t[i]];
            if (cls & C_ALNUM) {
                if ((i == 0 || t[i - 1] == ' ') && i + 2 < n && t[i + 1] == ' ' && (CLASS[t[i + 2]] & C_ALNUM) &&
                    (i + 3 >= n || !(CLASS[t[i + 3]] & C_ALNUM)))
                    Py_RETURN_TRUE;
            } else if ((cls & C_SEP) && i + 3 < n && (CLASS[t[i + 1]] & C_ALNUM) && t[i + 2] == t[i] &&
                       (CLASS[t[i + 3]] & C_ALNUM))
                Py_RETURN_TRUE;
        }
        Py_RETURN_FALSE;
    }
    int kind = PyUnicode_KIND(arg);
    const void *data = PyUnicode_DATA(arg);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (!alnum(c)) {
            if (c < 128 && (CLASS[c] & C_SEP) && alnum(at(kind, data, n, i + 1)) && at(kind, data, n, i + 2) == c &&
                alnum(at(kind, data, n, i + 3)))
                Py_RETURN_TRUE;
            continue;
        }
        /* c is the first letter of the space gate: a space (or the padding) before, a space after. */
        if ((i == 0 || at(kind, data, n, i - 1) == ' ') && at(kind, data, n, i + 1) == ' ' &&
            alnum(at(kind, data, n, i + 2)) && !alnum(at(kind, data, n, i + 3)))
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static inline int ascii_letter(Py_UCS1 c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline int ascii_alnum(Py_UCS1 c) { return ascii_letter(c) || (c >= '0' && c <= '9'); }
static inline int run_char(Py_UCS1 c) { return ascii_alnum(c) || c == '_' || c == '@' || c == '$'; }

/* views.unleet's seam walk up to the e-mail test: False only when every seam's token is the local part
 * and domain head of an e-mail address (unleet then skips them all and returns None). True for any
 * other seam, and for every non-ASCII text (where re's classes are wider: the Python walk decides). */
static PyObject *leet_beyond_emails(PyObject *Py_UNUSED(self), PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "leet_beyond_emails() needs a str");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_TRUE;
    const Py_UCS1 *t = PyUnicode_1BYTE_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    Py_ssize_t done = 0;
    for (Py_ssize_t p = 0; p < n; p++) {
        Py_UCS1 c = t[p];
        if (!((c >= '0' && c <= '9') || c == '@' || c == '$')) continue;
        /* _LEET_SEAM: a letter before (look-behind) or after */
        if (!((p > 0 && ascii_letter(t[p - 1])) || (p + 1 < n && ascii_letter(t[p + 1])))) continue;
        if (p < done) continue; /* a seam of the token already visited */
        Py_ssize_t start = p;
        while (start > 0 && run_char(t[start - 1])) start--;
        done = p;
        while (done < n && run_char(t[done])) done++;
        /* _in_email: an "@" inside the token (not first, not last), then _DOMAIN_REST at its end */
        Py_ssize_t at_sign = -1;
        for (Py_ssize_t k = start; k < done; k++)
            if (t[k] == '@') {
                at_sign = k - start;
                break;
            }
        int email = 0;
        if (at_sign > 0 && at_sign < done - start - 1) {
            Py_ssize_t q = done;
            while (q < n && (ascii_alnum(t[q]) || t[q] == '-')) q++;
            email = q + 1 < n && t[q] == '.' && ascii_alnum(t[q + 1]);
        }
        if (!email) Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}


/* decoders.maybe_encoded: "%", "\\x" or "0x" in the text, or 16 base64 characters in a row, or 17 of
 * the hex-with-separators class (a non-ASCII character is in neither class: it ends a run). */
static PyObject *maybe_encoded(PyObject *Py_UNUSED(self), PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "maybe_encoded() needs a str");
        return NULL;
    }
    int kind = PyUnicode_KIND(arg);
    const void *data = PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    Py_ssize_t b64 = 0, hex = 0;
    if (PyUnicode_IS_ASCII(arg)) { /* the common case: the same tests on bytes */
        const Py_UCS1 *t = data;
        if (memchr(t, '%', (size_t)n) != NULL) Py_RETURN_TRUE;
        for (Py_ssize_t i = 1; i < n; i++) /* the markers "\\x" and "0x" */
            if (t[i] == 'x' && (t[i - 1] == '\\' || t[i - 1] == '0')) Py_RETURN_TRUE;
        for (Py_ssize_t i = 0; i < n; i++) { /* branch-free run lengths: a miss resets to 0 */
            unsigned char cls = CLASS[t[i]];
            b64 = (b64 + 1) & -(Py_ssize_t)((cls >> 1) & 1);
            hex = (hex + 1) & -(Py_ssize_t)((cls >> 2) & 1);
            if ((b64 >= 16) | (hex >= 17)) Py_RETURN_TRUE;
        }
        Py_RETURN_FALSE;
    }
    Py_UCS4 prev = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c == '%' || (c == 'x' && (prev == '\\' || prev == '0'))) Py_RETURN_TRUE;
        unsigned char cls = c < 128 ? CLASS[c] : 0;
        b64 = (cls & C_B64) ? b64 + 1 : 0;
        hex = (cls & C_HEXSEP) ? hex + 1 : 0;
        if (b64 >= 16 || hex >= 17) Py_RETURN_TRUE;
        prev = c;
    }
    Py_RETURN_FALSE;
}

/* Which of the decoders' pre-conditions hold (bits): 1 "%", 2 "\\x", 4 "0x", 8 a run of 16 base64
 * characters, 16 a run of 16 hex digits, 32 a run of 17 of the hex-with-separators class. A
 * non-ASCII character is in no class (in the regexes' str classes neither). */
static PyObject *encoded_kinds(PyObject *Py_UNUSED(self), PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "encoded_kinds() needs a str");
        return NULL;
    }
    int kind = PyUnicode_KIND(arg);
    const void *data = PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    Py_ssize_t b64 = 0, hex = 0, hexsep = 0;
    long bits = 0;
    if (PyUnicode_IS_ASCII(arg)) { /* the common case: the same tests on bytes, the runs branch-free */
        const Py_UCS1 *t = data;
        if (memchr(t, '%', (size_t)n) != NULL) bits |= 1;
        for (const Py_UCS1 *x = memchr(t, 'x', (size_t)n); x != NULL;
             x = memchr(x + 1, 'x', (size_t)(t + n - x - 1)))
            if (x > t) bits |= (x[-1] == '\\' ? 2 : 0) | (x[-1] == '0' ? 4 : 0);
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char cls = CLASS[t[i]];
            b64 = (b64 + 1) & -(Py_ssize_t)((cls >> 1) & 1);
            hexsep = (hexsep + 1) & -(Py_ssize_t)((cls >> 2) & 1);
            bits |= (b64 >= 16 ? 8 : 0) | (hexsep >= 17 ? 32 : 0);
        }
        if (bits & 8) /* hex digits are base64 characters: a hex run needs a base64 run */
            for (Py_ssize_t i = 0; i < n && !(bits & 16); i++) {
                hex = (hex + 1) & -(Py_ssize_t)((CLASS[t[i]] >> 4) & 1);
                bits |= hex >= 16 ? 16 : 0;
            }
        return PyLong_FromLong(bits);
    }
    Py_UCS4 prev = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        unsigned char cls = c < 128 ? CLASS[c] : 0;
        if (c == '%') bits |= 1;
        if (c == 'x' && prev == '\\') bits |= 2;
        if (c == 'x' && prev == '0') bits |= 4;
        b64 = (b64 + 1) & -(Py_ssize_t)((cls >> 1) & 1);
        hexsep = (hexsep + 1) & -(Py_ssize_t)((cls >> 2) & 1);
        hex = (hex + 1) & -(Py_ssize_t)((cls >> 4) & 1);
        if (b64 >= 16) bits |= 8;
        if (hex >= 16) bits |= 16;
        if (hexsep >= 17) bits |= 32;
        prev = c;
    }
    return PyLong_FromLong(bits);
}

/* views._plainly_english on an ASCII text: at least 24 spaces, and at least one marker (" the ",
 * " and ", ...: counted as str.count counts them in the lower-cased text, each marker's occurrences
 * left to right without overlap) per 12 spaces. The Python stops counting once there are enough,
 * which gives the same answer as counting them all. None for a non-ASCII text (lower-casing can
 * change its length there): the Python decides. */
static const char *const MARKERS[] = {" the ", " and ", " to ", " of ", " you ", " is "};
#define N_MARKERS 6

static inline unsigned char lower_ascii(unsigned char c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }

/* Does the marker occur at t[i] (lower-cased)? */
static inline int marker_at(const Py_UCS1 *t, Py_ssize_t n, Py_ssize_t i, const char *marker) {
    for (Py_ssize_t k = 1; marker[k] != 0; k++)
        if (i + k >= n || lower_ascii(t[i + k]) != (unsigned char)marker[k]) return 0;
    return 1;
}

static PyObject *plainly_english(PyObject *Py_UNUSED(self), PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "plainly_english() needs a str");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    const Py_UCS1 *t = PyUnicode_1BYTE_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    Py_ssize_t spaces = 0, found = 0;
    Py_ssize_t next_free[N_MARKERS] = {0}; /* per marker: where its next occurrence may start */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (t[i] != ' ') continue;
        spaces++;
        if (i + 1 >= n) continue;
        int first = -1, second = -1; /* the markers whose second character follows this space */
        switch (lower_ascii(t[i + 1])) {
        case 't': first = 0, second = 2; break;
        case 'a': first = 1; break;
        case 'o': first = 3; break;
        case 'y': first = 4; break;
        case 'i': first = 5; break;
        default: continue;
        }
        for (int m = first; m >= 0; m = second, second = -1) {
            if (i >= next_free[m] && marker_at(t, n, i, MARKERS[m])) {
                found++;
                next_free[m] = i + (Py_ssize_t)strlen(MARKERS[m]);
            }
        }
    }
    if (spaces >= 24 && found * 12 >= spaces) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"segments", segments, METH_VARARGS,
     "segments(text, max_segment, cls) -> list of cls(piece, start, end): indirect.segments in one pass."},
    {"maybe_spaced", maybe_spaced, METH_O, "maybe_spaced(text) -> bool: views._maybe_spaced in one pass."},
    {"leet_beyond_emails", leet_beyond_emails, METH_O,
     "leet_beyond_emails(text) -> bool: False when unleet would skip every seam as an e-mail address."},
    {"maybe_encoded", maybe_encoded, METH_O, "maybe_encoded(text) -> bool: decoders.maybe_encoded in one pass."},
    {"plainly_english", plainly_english, METH_O,
     "plainly_english(text) -> bool | None: views._plainly_english of an ASCII text (None: not ASCII)."},
    {"encoded_kinds", encoded_kinds, METH_O,
     "encoded_kinds(text) -> int: bits of the decoders' pre-conditions that hold (decoders.applicable)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_injection_kernel", "Compiled helpers of the injection detector.", -1, methods,
};

PyMODINIT_FUNC PyInit__injection_kernel(void) {
    fill_classes();
    return PyModule_Create(&module);
}
