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

static PyMethodDef methods[] = {
    {"segments", segments, METH_VARARGS,
     "segments(text, max_segment, cls) -> list of cls(piece, start, end): indirect.segments in one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_injection_kernel", "Compiled helpers of the injection detector.", -1, methods,
};

PyMODINIT_FUNC PyInit__injection_kernel(void) { return PyModule_Create(&module); }
