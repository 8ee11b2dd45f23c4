/* The `_uwsgi_native` CPython extension: the C half of the Python request path (native.h says
 * what each function accepts and returns). This file: the module; vars.c, http.c, response.c:
 * the functions; ws.c: a WebSocket session's reads and writes; asgi_scope.c: the ASGI scope;
 * lane.c: the native lane. */
#include "common.h"

/* ---- the module ------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"parse_vars", (PyCFunction)(void (*)(void))uwsgi_native_parse_vars, METH_FASTCALL,
     "parse_vars(block, max_vars) -> dict[bytes, bytes], or a negative uwsgi_packet_error"},
    {"environ", (PyCFunction)(void (*)(void))uwsgi_native_environ, METH_FASTCALL,
     "environ(vars, base) -> the PEP 3333 environ (str keys and values, latin-1)"},
    {"response", (PyCFunction)(void (*)(void))uwsgi_native_response, METH_FASTCALL,
     "response(status, headers, body, flags) -> (data, code, keepalive, headers_size, header_cnt, "
     "response_size), or None to take the Python path"},
    {"http_vars", (PyCFunction)(void (*)(void))uwsgi_native_http_vars, METH_FASTCALL,
     "http_vars(base, method, protocol, url, headers, keys) -> (vars, content_length, host), or None "
     "to take the Python path"},
    {"ws_recv", (PyCFunction)(void (*)(void))uwsgi_native_ws_recv, METH_FASTCALL,
     "ws_recv(fd, max_size, message_size, cut) -> (info, payload, rest, filled), or 0 / -errno"},
    {"ws_send", (PyCFunction)(void (*)(void))uwsgi_native_ws_send, METH_FASTCALL,
     "ws_send(fd, first_byte, payload) -> bytes of the frame not written, or -errno"},
    {"asgi_scope", (PyCFunction)(void (*)(void))uwsgi_native_asgi_scope, METH_FASTCALL,
     "asgi_scope(block, state, asgi) -> the ASGI HTTP scope of a uwsgi vars block, or None to take "
     "the Python path"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_uwsgi_native",
    "The C half of the Python request path (core/cpython/native.h).", -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__uwsgi_native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (uwsgi_native_vars_init() < 0 || uwsgi_native_http_init() < 0 || uwsgi_native_asgi_init() < 0 ||
        uwsgi_native_lane_init(m) < 0 ||
        PyModule_AddIntConstant(m, "RESP_HTTP", UWSGI_RESP_HTTP) < 0 ||
        PyModule_AddIntConstant(m, "WS_RECV", UWSGI_NATIVE_WS_RECV) < 0 ||
        PyModule_AddIntConstant(m, "RESP_HTTP11", UWSGI_RESP_HTTP11) < 0 ||
        PyModule_AddIntConstant(m, "RESP_KEEPALIVE", UWSGI_RESP_KEEPALIVE) < 0 ||
        PyModule_AddIntConstant(m, "RESP_HEAD", UWSGI_RESP_HEAD) < 0 ||
        PyModule_AddIntConstant(m, "KEY_SLOTS", UWSGI_NATIVE_KEY_SLOTS) < 0 ||
        PyModule_AddIntConstant(m, "HEAD_MAX", UWSGI_NATIVE_HEAD_MAX) < 0 ||
        PyModule_AddIntConstant(m, "BODY_MAX", UWSGI_NATIVE_BODY_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
