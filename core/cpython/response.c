/* response of _uwsgi_native (native.h): a whole response, head and body, serialised for one
 * send with the framing of uwsgid.net.request's flush(final=True). */
#include "common.h"

/* ---- response -------------------------------------------------------------------------------- */

static int has_crlf(const char *p, Py_ssize_t n) {
    return memchr(p, '\r', (size_t)n) != NULL || memchr(p, '\n', (size_t)n) != NULL;
}

static int contains_close(const char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i + 5 <= n; i++)
        if (uwsgi_strncaseeq(p + i, 5, "close", 5))
            return 1;
    return 0;
}

/* The status line's code, or -1 when it is not "NNN" / "NNN reason" without CR/LF. */
int uwsgi_native_status_code(const char *p, Py_ssize_t n) {
    if (n < 3 || p[0] < '1' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        return -1;
    if ((n > 3 && p[3] != ' ') || has_crlf(p, n))
        return -1;
    return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *p, size_t n) {
    /* callers size the buffer first: a bounds check anyway, never a write past cap */
    if (o->cap - o->len < n)
        return;
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

/* The response of status (checked: code) with the headers and body tuples (body: or bytes),
 * which the caller holds: None (a new reference) when it is not for the C path. Also used by
 * lane.c. */
PyObject *uwsgi_native_build_response(PyObject *status, int code, PyObject *headers, PyObject *body, long flags) {
    int http = (flags & UWSGI_RESP_HTTP) != 0, http11 = (flags & UWSGI_RESP_HTTP11) != 0;
    int keepalive = (flags & UWSGI_RESP_KEEPALIVE) != 0, head_req = (flags & UWSGI_RESP_HEAD) != 0;

    /* pass 1: check the headers, size the head */
    PyObject **hv = &PyTuple_GET_ITEM(headers, 0);
    Py_ssize_t nh = PyTuple_GET_SIZE(headers);
    size_t head_len = 9 + (size_t)PyBytes_GET_SIZE(status) + 2 + 2;   /* "HTTP/1.1 " status CRLF ... CRLF */
    long long app_cl = -1;
    int cnt = 0, app_close = 0;
    for (Py_ssize_t i = 0; i < nh; i++) {
        PyObject *item = hv[i];
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            Py_RETURN_NONE;
        PyObject *name = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value))
            Py_RETURN_NONE;
        const char *np = PyBytes_AS_STRING(name), *vp = PyBytes_AS_STRING(value);
        Py_ssize_t nl = PyBytes_GET_SIZE(name), vl = PyBytes_GET_SIZE(value);
        if (has_crlf(np, nl) || has_crlf(vp, vl))
            Py_RETURN_NONE;
        if (nl == 14 && uwsgi_strncaseeq(np, 14, "content-length", 14)) {
            app_cl = parse_length(vp, vl);
            if (app_cl < 0)
                Py_RETURN_NONE;
        }
        if (http) {
            /* framing and connection management are ours on an HTTP socket */
            if (uwsgi_strncaseeq(np, (size_t)nl, "connection", 10)) {
                if (contains_close(vp, vl))
                    app_close = 1;
                continue;
            }
            if (uwsgi_strncaseeq(np, (size_t)nl, "transfer-encoding", 17) ||
                uwsgi_strncaseeq(np, (size_t)nl, "keep-alive", 10))
                continue;
        }
        head_len += (size_t)nl + 2 + (size_t)vl + 2;
        cnt++;
        if (head_len > UWSGI_NATIVE_HEAD_MAX)
            Py_RETURN_NONE;
    }

    /* the body's parts */
    PyObject *single[1];
    PyObject **parts;
    Py_ssize_t np_ = 1;
    if (PyBytes_CheckExact(body)) {
        single[0] = body;
        parts = single;
    } else {
        parts = &PyTuple_GET_ITEM(body, 0);
        np_ = PyTuple_GET_SIZE(body);
    }
    size_t blen = 0;
    for (Py_ssize_t i = 0; i < np_; i++) {
        if (!PyBytes_CheckExact(parts[i]))
            Py_RETURN_NONE;
        blen += (size_t)PyBytes_GET_SIZE(parts[i]);
        if (blen >= UWSGI_NATIVE_BODY_MAX)
            Py_RETURN_NONE;
    }

    /* framing, as uwsgid.net.request's _head/flush(final=True) */
    if (app_close)
        keepalive = 0;
    int with_body;
    size_t send_len = 0;
    char tail[96];
    int tail_len = 0;
    if (code < 200 || code == 204 || code == 304) {
        with_body = 0;
    } else if (app_cl >= 0) {
        with_body = !head_req;
        send_len = (size_t)app_cl < blen ? (size_t)app_cl : blen;   /* never overrun a declared length */
    } else {
        tail_len = snprintf(tail, sizeof tail, "Content-Length: %zu\r\n", blen);
        with_body = !head_req;
        send_len = blen;
    }
    if (!with_body)
        send_len = 0;
    if (http) {
        const char *ka = NULL;
        if (!keepalive && http11)
            ka = "Connection: close\r\n";
        else if (keepalive && !http11)
            ka = "Connection: keep-alive\r\n";
        if (ka != NULL)
            tail_len += snprintf(tail + tail_len, sizeof tail - (size_t)tail_len, "%s", ka);
    } else {
        keepalive = 0;
    }
    if (with_body && app_cl >= 0 && (size_t)app_cl > send_len)
        keepalive = 0;   /* a short body: closing makes the truncation visible */
    head_len += (size_t)tail_len;

    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(head_len + send_len));
    if (data == NULL)
        return NULL;
    struct out o = {PyBytes_AS_STRING(data), 0, head_len + send_len};
    put(&o, "HTTP/1.1 ", 9);
    put(&o, PyBytes_AS_STRING(status), (size_t)PyBytes_GET_SIZE(status));
    put(&o, "\r\n", 2);
    for (Py_ssize_t i = 0; i < nh; i++) {
        PyObject *name = PyTuple_GET_ITEM(hv[i], 0), *value = PyTuple_GET_ITEM(hv[i], 1);
        const char *np = PyBytes_AS_STRING(name);
        Py_ssize_t nl = PyBytes_GET_SIZE(name);
        if (http && (uwsgi_strncaseeq(np, (size_t)nl, "connection", 10) ||
                     uwsgi_strncaseeq(np, (size_t)nl, "transfer-encoding", 17) ||
                     uwsgi_strncaseeq(np, (size_t)nl, "keep-alive", 10)))
            continue;
        put(&o, np, (size_t)nl);
        put(&o, ": ", 2);
        put(&o, PyBytes_AS_STRING(value), (size_t)PyBytes_GET_SIZE(value));
        put(&o, "\r\n", 2);
    }
    put(&o, tail, (size_t)tail_len);
    put(&o, "\r\n", 2);
    size_t left = send_len;
    for (Py_ssize_t i = 0; i < np_ && left > 0; i++) {
        size_t n = (size_t)PyBytes_GET_SIZE(parts[i]);
        if (n > left)
            n = left;
        put(&o, PyBytes_AS_STRING(parts[i]), n);
        left -= n;
    }
    if (o.len != head_len + send_len) {   /* cannot happen: sized above */
        Py_DECREF(data);
        PyErr_SetString(PyExc_SystemError, "_uwsgi_native.response: size mismatch");
        return NULL;
    }
    return Py_BuildValue("(Niinin)", data, code, keepalive, (Py_ssize_t)head_len, cnt, (Py_ssize_t)send_len);
}

PyObject *uwsgi_native_response(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "response(status, headers, body, flags) takes 4 arguments");
        return NULL;
    }
    PyObject *status = args[0], *headers = args[1], *body = args[2];
    long flags = PyLong_AsLong(args[3]);
    if (flags == -1 && PyErr_Occurred())
        return NULL;
    if (!PyBytes_CheckExact(status) || !(PyList_CheckExact(headers) || PyTuple_CheckExact(headers)) ||
        !(PyBytes_CheckExact(body) || PyList_CheckExact(body) || PyTuple_CheckExact(body)))
        Py_RETURN_NONE;
    int code = uwsgi_native_status_code(PyBytes_AS_STRING(status), PyBytes_GET_SIZE(status));
    if (code < 0)
        Py_RETURN_NONE;
    /* The app's lists are read as tuples of our own: nothing that runs during an allocation
     * (a finalizer, another thread) can resize or empty them under the item pointers. */
    PyObject *h = PySequence_Tuple(headers);
    if (h == NULL)
        return NULL;
    PyObject *b = body;
    if (PyBytes_CheckExact(body))
        Py_INCREF(b);
    else if ((b = PySequence_Tuple(body)) == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    PyObject *r = uwsgi_native_build_response(status, code, h, b, flags);
    Py_DECREF(h);
    Py_DECREF(b);
    return r;
}
