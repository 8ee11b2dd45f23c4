/* lane_static.c: small static files answered by the native lane (lane.h) from the worker's file
 * cache (uwsgid/static/filecache.py, which fills the entries: a file served by the Python path
 * during this second is answered here again until the second ends, as filecache.get allows).
 * Only a plain GET of a cached path: HEAD, If-Modified-Since, Range, and every file not cached
 * this second go the Python path (uwsgid/static/serve.py), which answers, counts and logs them. */
#include "lane.h"

#include <time.h>

/* PATH_INFO as the Python path has it: percent-decoded (unquote_to_bytes) over HTTP */
static PyObject *path_key(const struct reqinfo *ri) {
    if (!ri->path_pct)
        return PyBytes_FromStringAndSize(ri->path, (Py_ssize_t)ri->path_len);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)ri->path_len);
    if (out == NULL)
        return NULL;
    size_t k = uwsgi_native_unquote(ri->path, ri->path_len, PyBytes_AS_STRING(out));
    if (_PyBytes_Resize(&out, (Py_ssize_t)k) < 0)
        return NULL;
    return out;
}

static int under_a_mountpoint(Lane *self, PyObject *key) {
    PyObject *prefixes = self->static_prefixes;
    if (prefixes == NULL)
        return 1;
    const char *p = PyBytes_AS_STRING(key);
    size_t n = (size_t)PyBytes_GET_SIZE(key);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++) {
        PyObject *m = PyTuple_GET_ITEM(prefixes, i);
        size_t ml = (size_t)PyBytes_GET_SIZE(m);
        if (ml <= n && memcmp(p, PyBytes_AS_STRING(m), ml) == 0)     /* a plain prefix, as uWSGI's */
            return 1;
    }
    return 0;
}

int lane_static(Lane *self, struct reqinfo *ri, int http) {
    ri->answer = NULL;
    if (self->static_entries == NULL || ri->path_len == 0)
        return 0;
    PyObject *key = path_key(ri);
    if (key == NULL)
        return -1;
    if (!under_a_mountpoint(self, key)) {
        Py_DECREF(key);
        return 0;
    }
    if (!ri->get || ri->conditional) {
        Py_DECREF(key);
        return 2;
    }
    PyObject *e = PyDict_GetItemWithError(self->static_entries, key);    /* borrowed */
    Py_DECREF(key);
    if (e == NULL)
        return PyErr_Occurred() ? -1 : 2;
    if (!PyTuple_CheckExact(e) || PyTuple_GET_SIZE(e) != 5)
        return 2;
    Py_INCREF(e);       /* the dict may change while we allocate */
    long second = PyLong_AsLong(PyTuple_GET_ITEM(e, 0));
    PyObject *block = PyTuple_GET_ITEM(e, http ? 2 : 1), *body = PyTuple_GET_ITEM(e, 4);
    int cnt = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 3));
    if (second != (long)time(NULL) || !PyBytes_CheckExact(block) || !PyBytes_CheckExact(body)) {
        Py_DECREF(e);
        if (PyErr_Occurred())
            PyErr_Clear();
        return 2;
    }
    /* the head as uwsgid.net.request's _head makes it for a HeaderBlock with a Content-Length */
    const char *tail = "";
    if (http && !ri->keepalive && ri->http11)
        tail = "Connection: close\r\n";
    else if (http && ri->keepalive && !ri->http11)
        tail = "Connection: keep-alive\r\n";
    size_t tl = strlen(tail), bl = (size_t)PyBytes_GET_SIZE(block), nb = (size_t)PyBytes_GET_SIZE(body);
    size_t head = 17 + bl + tl + 2;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(head + nb));
    if (out == NULL) {
        Py_DECREF(e);
        return -1;
    }
    char *o = PyBytes_AS_STRING(out);
    memcpy(o, "HTTP/1.1 200 OK\r\n", 17);
    memcpy(o + 17, PyBytes_AS_STRING(block), bl);
    memcpy(o + 17 + bl, tail, tl);
    memcpy(o + 17 + bl + tl, "\r\n", 2);
    memcpy(o + head, PyBytes_AS_STRING(body), nb);
    Py_DECREF(e);
    ri->answer = out;
    ri->answer_head = head;
    ri->answer_cnt = cnt;
    return 1;
}
