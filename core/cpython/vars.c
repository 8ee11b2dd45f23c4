/* parse_vars and environ of _uwsgi_native (native.h): the uwsgi packet's vars as a dict, and
 * the WSGI environ from any vars dict. Every length from the wire is bounded by core/packet.c
 * (uwsgi_parse_vars) before it is used. */
#include "common.h"

/* parse_vars: the key objects of the last packet, by position (strong references). */
static PyObject *key_slots[UWSGI_NATIVE_KEY_SLOTS];
/* environ: var name bytes -> str (bounded, first come). */
static PyObject *names;
static PyObject *s_script_name, *s_url_scheme, *s_http, *s_https;

/* ---- parse_vars ------------------------------------------------------------------------------ */

static PyObject *cached_key(Py_ssize_t i, const char *p, size_t len) {
    if (i < UWSGI_NATIVE_KEY_SLOTS) {
        PyObject *k = key_slots[i];
        if (k != NULL && (size_t)PyBytes_GET_SIZE(k) == len && memcmp(PyBytes_AS_STRING(k), p, len) == 0) {
            Py_INCREF(k);
            return k;
        }
        k = PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
        if (k == NULL)
            return NULL;
        Py_INCREF(k);
        Py_XSETREF(key_slots[i], k);
        return k;
    }
    return PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
}

PyObject *uwsgi_native_parse_vars(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "parse_vars(block, max_vars) takes 2 arguments");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "parse_vars: block must be bytes, not %.80s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    long max_vars = PyLong_AsLong(args[1]);
    if (max_vars == -1 && PyErr_Occurred())
        return NULL;
    if (max_vars < 0 || max_vars > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "parse_vars: max_vars must be 0-%d, not %ld", INT_MAX, max_vars);
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    size_t len = (size_t)PyBytes_GET_SIZE(args[0]);
    /* Each var takes at least 5 bytes (2 + a 1-byte key + 2): a block holds at most len / 5, so
     * offsets for len / 5 + 1 vars are enough to reach every error uwsgi_parse_vars can report
     * with the caller's max_vars (UWSGI_ERR_TOO_MANY included) without sizing by max_vars. */
    size_t cap = len / 5 + 1;
    if (cap > (size_t)max_vars)
        cap = (size_t)max_vars;
    uint32_t stack[4 * 64], *offs = stack;
    if (cap > 64) {
        offs = PyMem_Malloc(4 * cap * sizeof(uint32_t));
        if (offs == NULL)
            return PyErr_NoMemory();
    }
    int n = uwsgi_parse_vars(buf, len, (int)cap, offs);
    PyObject *d = NULL;
    if (n < 0) {
        d = PyLong_FromLong(n);
        goto out;
    }
    d = PyDict_New();
    if (d == NULL)
        goto out;
    for (int i = 0; i < n; i++) {
        const uint32_t *o = offs + 4 * i;
        PyObject *k = cached_key(i, buf + o[0], o[1]);
        PyObject *v = k ? PyBytes_FromStringAndSize(buf + o[2], (Py_ssize_t)o[3]) : NULL;
        int bad = v == NULL || PyDict_SetItem(d, k, v) < 0;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (bad) {
            Py_CLEAR(d);
            goto out;
        }
    }
out:
    if (offs != stack)
        PyMem_Free(offs);
    return d;
}

/* ---- environ --------------------------------------------------------------------------------- */

static PyObject *var_name(PyObject *k) {
    /* a new reference to the str of var name k */
    PyObject *name = PyDict_GetItemWithError(names, k);
    if (name != NULL) {
        Py_INCREF(name);
        return name;
    }
    if (PyErr_Occurred())
        return NULL;
    name = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), NULL);
    if (name != NULL && PyDict_GET_SIZE(names) < UWSGI_NATIVE_NAMES_MAX && PyDict_SetItem(names, k, name) < 0)
        Py_CLEAR(name);
    return name;
}

static int set_scheme(PyObject *env, PyObject *scheme, PyObject *https) {
    PyObject *value;
    if (scheme != NULL && PyBytes_GET_SIZE(scheme) > 0)
        value = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(scheme), PyBytes_GET_SIZE(scheme), NULL);
    else {
        int on = https != NULL && uwsgi_native_https_on(PyBytes_AS_STRING(https), (size_t)PyBytes_GET_SIZE(https));
        value = on ? s_https : s_http;
        Py_INCREF(value);
    }
    if (value == NULL)
        return -1;
    int r = PyDict_SetItem(env, s_url_scheme, value);
    Py_DECREF(value);
    return r;
}

static int strip_script_name(PyObject *env) {
    /* SCRIPT_NAME "/" (nginx setups) means the root: PEP 3333 wants "" there. */
    PyObject *sn = PyDict_GetItemWithError(env, s_script_name);
    if (sn == NULL || !PyUnicode_Check(sn))
        return PyErr_Occurred() ? -1 : 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(sn), end = n;
    while (end > 0 && PyUnicode_READ_CHAR(sn, end - 1) == '/')
        end--;
    if (end == n)
        return 0;
    PyObject *stripped = PyUnicode_Substring(sn, 0, end);
    if (stripped == NULL)
        return -1;
    int r = PyDict_SetItem(env, s_script_name, stripped);
    Py_DECREF(stripped);
    return r;
}

PyObject *uwsgi_native_environ(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "environ(vars: dict, base: dict) takes 2 dicts");
        return NULL;
    }
    PyObject *vars = args[0];
    PyObject *env = PyDict_Copy(args[1]);
    if (env == NULL)
        return NULL;
    PyObject *k, *v, *scheme = NULL, *https = NULL;
    Py_ssize_t pos = 0;
    int want_scheme = 0;
    /* k and v are held while used, scheme and https until the end: an allocation may run a
     * finalizer, which could change the dict under borrowed references */
    while (PyDict_Next(vars, &pos, &k, &v)) {
        if (!PyBytes_Check(k) || !PyBytes_Check(v)) {
            PyErr_Format(PyExc_TypeError, "environ: vars must be bytes: bytes, not %.80s: %.80s",
                         Py_TYPE(k)->tp_name, Py_TYPE(v)->tp_name);
            goto fail;
        }
        const char *kp = PyBytes_AS_STRING(k);
        Py_ssize_t kl = PyBytes_GET_SIZE(k);
        /* a CGI server never passes these as HTTP_* (wsgiref.validate rejects them) */
        if (bytes_is(kp, kl, "HTTP_CONTENT_TYPE", 17) || bytes_is(kp, kl, "HTTP_CONTENT_LENGTH", 19))
            continue;
        Py_INCREF(k);
        Py_INCREF(v);
        if (bytes_is(kp, kl, "UWSGI_SCHEME", 12)) {
            Py_INCREF(v);
            Py_XSETREF(scheme, v);
            want_scheme = 1;
        } else if (bytes_is(kp, kl, "HTTPS", 5)) {
            Py_INCREF(v);
            Py_XSETREF(https, v);
            want_scheme = 1;
        }
        PyObject *name = var_name(k);
        PyObject *value = name ? PyUnicode_DecodeLatin1(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), NULL) : NULL;
        int bad = value == NULL || PyDict_SetItem(env, name, value) < 0;
        Py_XDECREF(name);
        Py_XDECREF(value);
        Py_DECREF(k);
        Py_DECREF(v);
        if (bad)
            goto fail;
    }
    if (strip_script_name(env) < 0 || (want_scheme && set_scheme(env, scheme, https) < 0))
        goto fail;
    Py_XDECREF(scheme);
    Py_XDECREF(https);
    return env;
fail:
    Py_XDECREF(scheme);
    Py_XDECREF(https);
    Py_DECREF(env);
    return NULL;
}

int uwsgi_native_vars_init(void) {
    names = PyDict_New();
    s_script_name = PyUnicode_InternFromString("SCRIPT_NAME");
    s_url_scheme = PyUnicode_InternFromString("wsgi.url_scheme");
    s_http = PyUnicode_InternFromString("http");
    s_https = PyUnicode_InternFromString("https");
    return names && s_script_name && s_url_scheme && s_http && s_https ? 0 : -1;
}
