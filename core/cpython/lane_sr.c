/* lane_sr.c: the start_response (and write) an app on the native lane gets (lane.h). Nothing is
 * sent while the app runs: status and headers are checked and kept, write()'s data kept in
 * order, for the lane to send with the body or to hand to the Python path. */
#include "lane.h"

/* ---- start_response ------------------------------------------------------------------------- */

static const char *HOP_BY_HOP[] = {"keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                                   "trailer", "trailers", "transfer-encoding", "upgrade", NULL};

static int is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* the latin-1 bytes of an exact str of one-byte kind, NULL (no error) for anything else */
static PyObject *latin1(PyObject *s) {
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_READY(s) || PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s));
}

static int status_ok(PyObject *b) {
    const char *p = PyBytes_AS_STRING(b);
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (n < 3 || p[0] < '1' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        return 0;
    if (n == 3)
        return 1;
    if (p[3] != ' ')
        return 0;
    for (Py_ssize_t i = 4; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

static int name_ok(PyObject *b) {
    const char *p = PyBytes_AS_STRING(b);
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)p[i]))
            return 0;
    for (const char **h = HOP_BY_HOP; *h; h++)
        if (uwsgi_strncaseeq(p, (size_t)n, *h, strlen(*h)))
            return 0;
    return 1;
}

static int value_ok(PyObject *b) {
    const char *p = PyBytes_AS_STRING(b);
    size_t n = (size_t)PyBytes_GET_SIZE(b);
    return memchr(p, '\r', n) == NULL && memchr(p, '\n', n) == NULL && memchr(p, '\0', n) == NULL;
}

/* The app's status and headers checked and encoded here: 1 (set), 0 (not the plain shapes: the
 * Python check decides), -1 (error). */
static int check_fast(LaneStartResponse *sr, PyObject *status, PyObject *headers) {
    PyObject *bs = latin1(status), *out = NULL;
    if (bs == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!status_ok(bs) || !(PyList_CheckExact(headers) || PyTuple_CheckExact(headers)))
        goto plain;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(headers);
    out = PyTuple_New(n);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= PySequence_Fast_GET_SIZE(headers))    /* a finalizer shrank the app's list */
            goto plain;
        PyObject *item = PySequence_Fast_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            goto plain;
        PyObject *bn = latin1(PyTuple_GET_ITEM(item, 0));
        if (bn == NULL)
            goto plain_or_fail;
        PyObject *bv = latin1(PyTuple_GET_ITEM(item, 1));
        if (bv == NULL) {
            Py_DECREF(bn);
            goto plain_or_fail;
        }
        PyObject *pair = PyTuple_Pack(2, bn, bv);
        int good = pair != NULL && name_ok(bn) && value_ok(bv);
        Py_DECREF(bn);
        Py_DECREF(bv);
        if (pair == NULL)
            goto fail;
        PyTuple_SET_ITEM(out, i, pair);
        if (!good)
            goto plain;
    }
    if (PySequence_Fast_GET_SIZE(headers) != n)
        goto plain;
    Py_XSETREF(sr->bstatus, bs);
    Py_XSETREF(sr->bheaders, out);
    return 1;
plain_or_fail:
    if (PyErr_Occurred())
        goto fail;
plain:
    Py_DECREF(bs);
    Py_XDECREF(out);
    return 0;
fail:
    Py_DECREF(bs);
    Py_XDECREF(out);
    return -1;
}

/* The Python path's method `name`, once it took the request over (forward: a weak reference, as
 * the app's generator holds this object and the Python path's response holds the generator). */
static PyObject *forwarded(LaneStartResponse *sr, const char *name) {
    PyObject *target = PyWeakref_GetObject(sr->forward);
    if (target == NULL)
        return NULL;
    if (target == Py_None) {
        PyErr_SetString(sr->error_class, "start_response or write called after the response ended");
        return NULL;
    }
    return PyObject_GetAttrString(target, name);
}

static PyObject *sr_call(LaneStartResponse *sr, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"status", "headers", "exc_info", NULL};
    PyObject *status, *headers, *exc_info = Py_None;
    if (sr->forward != NULL) {
        /* the app kept start_response (a generator calling it on its first step) and the Python
         * path now runs the request: the call is its */
        PyObject *f = forwarded(sr, "start_response");
        if (f == NULL)
            return NULL;
        PyObject *r = PyObject_Call(f, args, kwargs);
        Py_DECREF(f);
        return r;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response", kwlist, &status, &headers, &exc_info))
        return NULL;
    /* nothing is sent while the app runs on the lane: exc_info may always replace the head */
    if (exc_info == Py_None && sr->status != NULL) {
        PyErr_SetString(sr->error_class, "start_response() called a second time without exc_info");
        return NULL;
    }
    int r = check_fast(sr, status, headers);
    if (r < 0)
        return NULL;
    if (r == 0) {
        /* the Python check: its errors in its words, or the shapes it accepts (bytes pairs) */
        PyObject *checked = PyObject_CallFunctionObjArgs(sr->check, status, headers, NULL);
        if (checked == NULL)
            return NULL;
        if (!PyTuple_Check(checked) || PyTuple_GET_SIZE(checked) != 2) {
            Py_DECREF(checked);
            PyErr_SetString(PyExc_SystemError, "lane: the start_response check returned no pair");
            return NULL;
        }
        PyObject *bh = PySequence_Tuple(PyTuple_GET_ITEM(checked, 1));
        if (bh == NULL) {
            Py_DECREF(checked);
            return NULL;
        }
        Py_INCREF(PyTuple_GET_ITEM(checked, 0));
        Py_XSETREF(sr->bstatus, PyTuple_GET_ITEM(checked, 0));
        Py_XSETREF(sr->bheaders, bh);
        Py_DECREF(checked);
    }
    Py_INCREF(status);
    Py_INCREF(headers);
    Py_XSETREF(sr->status, status);
    Py_XSETREF(sr->headers, headers);
    return PyObject_GetAttrString((PyObject *)sr, "write");
}

static PyObject *sr_write(LaneStartResponse *sr, PyObject *data) {
    /* kept in order for the Python path, which sends them as the app's write() calls */
    if (sr->forward != NULL) {  /* the Python path runs the request now (sr_call) */
        PyObject *f = forwarded(sr, "write");
        if (f == NULL)
            return NULL;
        PyObject *r = PyObject_CallOneArg(f, data);
        Py_DECREF(f);
        return r;
    }
    if (PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) == 0)
        Py_RETURN_NONE;
    if (sr->status == NULL) {
        PyErr_SetString(sr->error_class, "the app sent body data before calling start_response()");
        return NULL;
    }
    if (sr->written == NULL && (sr->written = PyList_New(0)) == NULL)
        return NULL;
    if (PyList_Append(sr->written, data) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void sr_dealloc(LaneStartResponse *sr) {
    Py_XDECREF(sr->status);
    Py_XDECREF(sr->headers);
    Py_XDECREF(sr->bstatus);
    Py_XDECREF(sr->bheaders);
    Py_XDECREF(sr->written);
    Py_XDECREF(sr->check);
    Py_XDECREF(sr->error_class);
    Py_XDECREF(sr->forward);
    PyObject_Free(sr);
}

static int sr_set_forward(LaneStartResponse *sr, PyObject *value, void *unused) {
    (void)unused;
    PyObject *ref = value != NULL ? PyWeakref_NewRef(value, NULL) : NULL;
    if (ref == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "forward cannot be deleted");
        return -1;
    }
    Py_XSETREF(sr->forward, ref);
    return 0;
}

static PyGetSetDef sr_getset[] = {
    {"forward", NULL, (setter)sr_set_forward,
     "the Python path's response (its start_response and write), once it took the request over", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyMethodDef sr_methods[] = {
    {"write", (PyCFunction)sr_write, METH_O, "the WSGI write callable"},
    {NULL, NULL, 0, NULL}
};

PyTypeObject LaneStartResponseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_uwsgi_native.StartResponse",
    .tp_basicsize = sizeof(LaneStartResponse),
    .tp_dealloc = (destructor)sr_dealloc,
    .tp_call = (ternaryfunc)sr_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "start_response of a request on the native lane",
    .tp_methods = sr_methods,
    .tp_getset = sr_getset,
};

LaneStartResponse *lane_start_response(PyObject *check, PyObject *error_class) {
    LaneStartResponse *sr = PyObject_New(LaneStartResponse, &LaneStartResponseType);
    if (sr == NULL)
        return NULL;
    sr->status = sr->headers = sr->bstatus = sr->bheaders = sr->written = sr->forward = NULL;
    Py_INCREF(check);
    sr->check = check;
    Py_INCREF(error_class);
    sr->error_class = error_class;
    return sr;
}
