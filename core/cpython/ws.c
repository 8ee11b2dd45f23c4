/* ws.c: a WebSocket session's per-message system calls (uwsgid/net/websocket.py), each one call
 * from Python: a read cut into its first client frame (checked and unmasked by core/wsframe.c's
 * uwsgi_ws_frame, the rules the cffi path keeps too), and a server frame written whole with
 * one writev. Everything else (control frames, fragments, violations' messages, TLS, waiting)
 * stays in Python: what these do not handle they hand back as bytes, untouched. */
#include "common.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

/* One read's room: the session reads at most this much at once (wsframes.RECV). The buffer is
 * used only with the GIL held and copied out before the call returns. */
static char ws_buf[UWSGI_NATIVE_WS_RECV];

static int fd_arg(PyObject *o) {
    long fd = PyLong_AsLong(o);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "bad file descriptor");
        return -1;
    }
    return (int)fd;
}

PyObject *uwsgi_native_ws_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "ws_recv(fd, max_size, message_size, cut)");
        return NULL;
    }
    int fd = fd_arg(args[0]);
    if (fd < 0)
        return NULL;
    unsigned long long max_size = PyLong_AsUnsignedLongLong(args[1]);
    if (max_size == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long message_size = PyLong_AsUnsignedLongLong(args[2]);
    if (message_size == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    int cut = PyObject_IsTrue(args[3]);
    if (cut < 0)
        return NULL;
    ssize_t n = read(fd, ws_buf, sizeof ws_buf);
    if (n <= 0)
        return PyLong_FromLong(n < 0 ? -(long)errno : 0);
    long r = cut ? uwsgi_ws_frame(ws_buf, (size_t)n, max_size, message_size) : UWSGI_WS_MORE;
    size_t end = 0;
    PyObject *payload;
    if (r >= 0) {
        size_t plen = (size_t)(r >> 9);
        end = (size_t)((r >> 5) & 15) + plen;       /* uwsgi_ws_frame checked end <= n */
        payload = PyBytes_FromStringAndSize(ws_buf + end - plen, (Py_ssize_t)plen);
        if (payload == NULL)
            return NULL;
    } else {
        payload = Py_NewRef(Py_None);   /* more bytes needed, or a violation: Python reparses */
    }
    PyObject *rest = PyBytes_FromStringAndSize(ws_buf + end, (Py_ssize_t)((size_t)n - end));
    if (rest == NULL) {
        Py_DECREF(payload);
        return NULL;
    }
    return Py_BuildValue("(lNNO)", r, payload, rest, n == (ssize_t)sizeof ws_buf ? Py_True : Py_False);
}

PyObject *uwsgi_native_ws_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "ws_send(fd, first_byte, payload)");
        return NULL;
    }
    int fd = fd_arg(args[0]);
    if (fd < 0)
        return NULL;
    long b0 = PyLong_AsLong(args[1]);
    if (b0 == -1 && PyErr_Occurred())
        return NULL;
    if (b0 < 0 || b0 > 255) {
        PyErr_SetString(PyExc_ValueError, "first_byte out of 0..255");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned char head[10];
    size_t hlen, plen = (size_t)view.len;
    head[0] = (unsigned char)b0;
    if (plen < 126) {
        head[1] = (unsigned char)plen;
        hlen = 2;
    } else if (plen <= 0xFFFF) {
        head[1] = 126;
        head[2] = (unsigned char)(plen >> 8);
        head[3] = (unsigned char)plen;
        hlen = 4;
    } else {
        head[1] = 127;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (unsigned char)((uint64_t)plen >> (56 - 8 * i));
        hlen = 10;
    }
    struct iovec iov[2] = {{head, hlen}, {view.buf, plen}};
    ssize_t n = writev(fd, iov, plen ? 2 : 1);
    int err = errno;
    PyBuffer_Release(&view);
    size_t total = hlen + plen;
    if (n < 0)
        return PyLong_FromLong(err == EAGAIN || err == EINTR ? (long)total : -(long)err);
    return PyLong_FromSize_t(total - (size_t)n);
}
