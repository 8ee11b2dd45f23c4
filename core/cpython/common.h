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
/* lane.c */
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

#endif
