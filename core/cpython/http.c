/* http_vars of _uwsgi_native (native.h): the CGI vars of a common HTTP head that llhttp
 * (httptools) accepted, in one call instead of a Python loop over its fields. */
#include "common.h"

/* the bytes names of the vars it sets */
static PyObject *b_protocol, *b_method, *b_uri, *b_query, *b_path;

/* ---- http_vars ------------------------------------------------------------------------------- */

/* Percent-decoding as urllib.parse.unquote_to_bytes: %XX -> the byte, a bad escape stays. */
static PyObject *unquote(const char *p, Py_ssize_t n) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);   /* never longer than the input */
    if (out == NULL)
        return NULL;
    Py_ssize_t j = (Py_ssize_t)uwsgi_native_unquote(p, (size_t)n, PyBytes_AS_STRING(out));
    if (_PyBytes_Resize(&out, j) < 0)
        return NULL;
    return out;
}

static int set_bytes(PyObject *d, PyObject *key, const char *p, Py_ssize_t n) {
    PyObject *v = PyBytes_FromStringAndSize(p, n);
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return r;
}

PyObject *uwsgi_native_http_vars(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6 || !PyDict_Check(args[0]) || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2]) ||
        !PyBytes_Check(args[3]) || !PyList_Check(args[4]) || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "http_vars(base: dict, method: bytes, protocol: bytes, url: bytes, "
                                         "headers: list, keys: dict) takes 6 arguments");
        return NULL;
    }
    PyObject *method = args[1], *protocol = args[2], *url = args[3], *headers = args[4], *keys = args[5];
    const char *u = PyBytes_AS_STRING(url);
    Py_ssize_t ul = PyBytes_GET_SIZE(url);
    /* a fragment, or a target that is not /path: the Python path's checks */
    if (ul == 0 || u[0] != '/' || memchr(u, '#', (size_t)ul) != NULL)
        Py_RETURN_NONE;
    PyObject *v = PyDict_Copy(args[0]), *host = Py_None;
    long long cl = -1;
    if (v == NULL)
        return NULL;
    if (PyDict_SetItem(v, b_protocol, protocol) < 0 || PyDict_SetItem(v, b_method, method) < 0 ||
        PyDict_SetItem(v, b_uri, url) < 0)
        goto fail;
    const char *q = memchr(u, '?', (size_t)ul);
    Py_ssize_t pl = q ? q - u : ul;
    if (set_bytes(v, b_query, q ? q + 1 : "", q ? ul - pl - 1 : 0) < 0)
        goto fail;
    PyObject *path = memchr(u, '%', (size_t)pl) ? unquote(u, pl) : PyBytes_FromStringAndSize(u, pl);
    if (path == NULL)
        goto fail;
    int bad = PyDict_SetItem(v, b_path, path) < 0;
    Py_DECREF(path);
    if (bad)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {   /* the parser's own list */
        PyObject *item = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            goto decline;
        PyObject *name = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value))
            goto decline;
        /* a name never seen (its key is made by the Python path, which caches it) */
        PyObject *key = PyDict_GetItemWithError(keys, name);
        if (key == NULL) {
            if (PyErr_Occurred())
                goto fail;
            goto decline;
        }
        int has = PyDict_Contains(v, key);
        if (has < 0)
            goto fail;
        if (has || !PyBytes_Check(key))
            goto decline;       /* a repeated field, or a name with "_" (mapped to a var every request has) */
        const char *kp = PyBytes_AS_STRING(key), *vp = PyBytes_AS_STRING(value);
        Py_ssize_t kl = PyBytes_GET_SIZE(key), vl = PyBytes_GET_SIZE(value);
        if (bytes_is(kp, kl, "HTTP_TRANSFER_ENCODING", 22) || bytes_is(kp, kl, "HTTP_EXPECT", 11))
            goto decline;       /* chunked bodies and 100-continue: the Python path */
        if (bytes_is(kp, kl, "CONTENT_LENGTH", 14)) {
            cl = parse_length(vp, vl);     /* llhttp accepted digits only */
            if (cl < 0 || (vl > 0 && (vp[0] == ' ' || vp[0] == '\t')) || (vl > 1 && vp[0] == '0'))
                goto decline;   /* leading zeros are normalised by the Python path */
        } else if (bytes_is(kp, kl, "HTTP_HOST", 9)) {
            host = value;
        }
        if (PyDict_SetItem(v, key, value) < 0)
            goto fail;
    }
    return Py_BuildValue("(NLO)", v, cl, host);
decline:
    Py_DECREF(v);
    Py_RETURN_NONE;
fail:
    Py_DECREF(v);
    return NULL;
}

int uwsgi_native_http_init(void) {
    b_protocol = PyBytes_FromString("SERVER_PROTOCOL");
    b_method = PyBytes_FromString("REQUEST_METHOD");
    b_uri = PyBytes_FromString("REQUEST_URI");
    b_query = PyBytes_FromString("QUERY_STRING");
    b_path = PyBytes_FromString("PATH_INFO");
    return b_protocol && b_method && b_uri && b_query && b_path ? 0 : -1;
}
