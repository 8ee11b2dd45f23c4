/* common.h: private to core/cpython/ (the _uwsgi_native extension, see native.h): the
 * Python-callable functions each file defines, their set-up, and small shared helpers. */
#ifndef UWSGI_NATIVE_COMMON_H
#define UWSGI_NATIVE_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>

#include "../../uwsgi.h"
#include "native.h"

/* vars.c */
PyObject *uwsgi_native_parse_vars(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *uwsgi_native_environ(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int uwsgi_native_vars_init(void);
/* http.c */
PyObject *uwsgi_native_http_vars(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int uwsgi_native_http_init(void);
/* response.c */
PyObject *uwsgi_native_response(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int uwsgi_native_status_code(const char *p, Py_ssize_t n);
PyObject *uwsgi_native_build_response(PyObject *status, int code, PyObject *headers, PyObject *body,
                                      long flags);
/* ws.c */
PyObject *uwsgi_native_ws_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *uwsgi_native_ws_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* asgi_scope.c */
PyObject *uwsgi_native_asgi_scope(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int uwsgi_native_asgi_init(void);
/* lane_type.c */
int uwsgi_native_lane_init(PyObject *module);

/* p[0..len) is exactly the literal lit (litlen bytes). */
static inline int bytes_is(const char *p, Py_ssize_t len, const char *lit, Py_ssize_t litlen) {
    return len == litlen && memcmp(p, lit, (size_t)litlen) == 0;
}

/* A Content-Length value as Python's int() reads the plain forms: optional blanks, digits,
 * optional blanks. -1 for anything else (the Python path decides). */
static inline long long parse_length(const char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    long long v = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    Py_ssize_t start = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        if (i - start >= 15)
            return -1;
        v = v * 10 + (p[i] - '0');
        i++;
    }
    if (i == start)
        return -1;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i == n ? v : -1;
}

/* A hex digit's value, -1 for any other byte (percent-decoding as urllib's unquote_to_bytes). */
static inline int uwsgi_native_hexval(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decoding as urllib.parse.unquote_to_bytes (%XX -> the byte, a bad escape stays) of
 * p[0..n) into out (n bytes at least; out == p decodes in place): the decoded length. */
static inline size_t uwsgi_native_unquote(const char *p, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && n - i >= 3 && (hi = uwsgi_native_hexval((unsigned char)p[i + 1])) >= 0 &&
            (lo = uwsgi_native_hexval((unsigned char)p[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = p[i];
        }
    }
    return o;
}

/* uWSGI's HTTPS rule: "on" in any case as a prefix, a leading "1", or "true"/"yes". */
static inline int uwsgi_native_https_on(const char *p, size_t n) {
    if (n >= 2 && (p[0] | 0x20) == 'o' && (p[1] | 0x20) == 'n')
        return 1;
    if (n >= 1 && p[0] == '1')
        return 1;
    return uwsgi_strncaseeq(p, n, "true", 4) || uwsgi_strncaseeq(p, n, "yes", 3);
}

#endif
