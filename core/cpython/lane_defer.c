/* lane_defer.c: a lane request whose app answers later (LANE_DEFER, lane.h). An app that has not
 * finished when it returns to the lane (an ASGI task awaiting, a Lua core suspended on a cosocket)
 * calls lane.defer(owner) first: the lane then hands back a token instead of converting the
 * request into the Python path's objects (a Connection, a Request: 20-40 us). The token keeps what
 * the response writer needs: the fd, the framing flags, the request log's fields (copied: they
 * pointed into the lane's read buffer), the core, the start time. When the app is done,
 * token.complete(status, headers, body) serialises and sends the response, writes the scoreboard,
 * counts it for its app and logs its line, as lane.c does for a request answered at once. A shape
 * the lane does not send (complete() answers False), a streamed body, a wait for the client to go:
 * token.take() gives the request to the Python path, which builds its Request as for LANE_RESUME
 * (uwsgid/server/native_lane.py, _Driver.take_deferred).
 *
 * A token is answered once: complete() or take() after either raises RuntimeError. A token
 * dropped unanswered closes the connection it owns and says so in the log. */
#include "lane.h"

#include <errno.h>
#include <unistd.h>

enum { DEFER_PENDING = 0, DEFER_DONE = 1, DEFER_TAKEN = 2, DEFER_VOID = 3 };

typedef struct {
    PyObject_HEAD
    Lane *lane;
    PyObject *owner;            /* the Python side that asked (the lane's driver) */
    PyObject *conn;             /* the kept-alive Connection it came on (handle()), or None */
    PyObject *addr, *arg, *raw; /* the peer's sockaddr or None; the app's argument; a uwsgi packet's vars block or None */
    int fd, owned, modifier1, app, core, state;
    long long requests;         /* the worker's count for its log line */
    struct reqinfo ri;          /* the framing flags and the log fields, the strings in text */
    char *text;
} LaneDeferred;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* copy the log line's strings out of the lane's read buffer */
static int copy_text(LaneDeferred *t, const struct reqinfo *ri) {
    const char **fields[] = {&t->ri.uri, &t->ri.method, &t->ri.protocol, &t->ri.remote_addr, &t->ri.remote_user};
    const size_t lens[] = {ri->uri_len, ri->method_len, ri->protocol_len, ri->remote_addr_len, ri->remote_user_len};
    const char *from[] = {ri->uri, ri->method, ri->protocol, ri->remote_addr, ri->remote_user};
    size_t total = 1;
    for (int i = 0; i < 5; i++)
        total += lens[i];
    char *p = t->text = PyMem_Malloc(total);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < 5; i++) {
        if (lens[i])
            memcpy(p, from[i], lens[i]);
        *fields[i] = p;
        p += lens[i];
    }
    return 0;
}

/* lane.defer(owner): inside a block app's call, before it returns. */
PyObject *lane_defer(Lane *self, PyObject *owner) {
    if (self->cur_env == NULL || self->cur_ri == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "defer(): no lane request is inside the app");
        return NULL;
    }
    if (self->taken || self->deferred != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "defer(): the request was already taken or deferred");
        return NULL;
    }
    const struct reqinfo *ri = self->cur_ri;
    if (ri->app == NULL || ri->app->base != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "defer(): only a block app's request can be deferred");
        return NULL;
    }
    LaneDeferred *t = PyObject_New(LaneDeferred, &LaneDeferredType);
    if (t == NULL)
        return NULL;
    t->text = NULL;
    memset(&t->ri, 0, sizeof t->ri);
    t->ri.uri_len = ri->uri_len;
    t->ri.method_len = ri->method_len;
    t->ri.protocol_len = ri->protocol_len;
    t->ri.remote_addr_len = ri->remote_addr_len;
    t->ri.remote_user_len = ri->remote_user_len;
    t->ri.var_cnt = ri->var_cnt;
    t->ri.pktsize = ri->pktsize;
    t->ri.head = ri->head;
    t->ri.http11 = ri->http11;
    t->ri.keepalive = ri->keepalive;
    t->ri.started = ri->started;
    t->ri.wall = ri->wall;
    Py_INCREF(self);
    t->lane = self;
    Py_INCREF(owner);
    t->owner = owner;
    Py_INCREF(Py_None);
    t->conn = Py_None;
    Py_INCREF(self->cur_addr);
    t->addr = self->cur_addr;
    Py_INCREF(self->cur_env);
    t->arg = self->cur_env;
    Py_INCREF(self->cur_raw);
    t->raw = self->cur_raw;
    t->fd = self->cur_fd;
    t->owned = 0;               /* settled when the app returns (lane_defer_settle) */
    t->modifier1 = self->cur_modifier1;
    t->app = (int)(ri->app - self->apps);
    t->core = self->cur;
    t->requests = self->requests;
    t->state = DEFER_VOID;      /* until settled: complete() and take() refuse it */
    if (copy_text(t, ri) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    Py_INCREF(t);
    self->deferred = (PyObject *)t;
    return (PyObject *)t;
}

/* serve_request (lane.c): the app returned after defer(). ok: it returned (no error): the answer
 * (served, LANE_DEFER, token), the fd the token's; else the token is void and NULL comes back
 * without an error (the request goes on as if not deferred). Steals token. */
PyObject *lane_defer_settle(Lane *self, PyObject *token, int ok, int owned, Py_ssize_t served) {
    (void)self;
    LaneDeferred *t = (LaneDeferred *)token;
    PyObject *answer = NULL;
    if (ok) {
        t->owned = owned;
        t->state = DEFER_PENDING;
        answer = Py_BuildValue("(niO)", served, LANE_DEFER, token);
        if (answer == NULL)
            t->state = DEFER_VOID;  /* the lane's error path closes the fd */
    }
    Py_DECREF(token);
    return answer;
}

static int check_pending(LaneDeferred *t, const char *what) {
    static const char *why[] = {NULL, "it was already completed", "the Python path took it",
                                "its app failed before it returned to the lane"};
    if (t->state == DEFER_PENDING)
        return 0;
    PyErr_Format(PyExc_RuntimeError, "%s: the deferred request cannot be answered again: %s", what,
                 why[t->state]);
    return -1;
}

/* token.complete(status, headers, body) -> the lane's answer tuple as serve()/handle() give
 * (LANE_KEEP, LANE_CLOSE, LANE_TAIL, LANE_GONE), None (sent and closed), or False: a shape the
 * lane leaves to the Python path (take() it then). */
static PyObject *defer_complete(LaneDeferred *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "complete(status: bytes, headers, body: bytes) takes 3 arguments");
        return NULL;
    }
    if (check_pending(t, "complete()") < 0)
        return NULL;
    Lane *lane = t->lane;
    struct lane_app *app = &lane->apps[t->app];
    if (t->conn != Py_None) {
        /* its Connection closed meanwhile (the worker's exit): the fd may be another's by now */
        PyObject *closed = PyObject_GetAttrString(t->conn, "closed");
        if (closed == NULL)
            return NULL;
        int gone = PyObject_IsTrue(closed);
        Py_DECREF(closed);
        if (gone < 0)
            return NULL;
        if (gone) {
            t->state = DEFER_DONE;
            return Py_BuildValue("(niiy#)", (Py_ssize_t)1, LANE_GONE, EPIPE, t->ri.uri, (Py_ssize_t)t->ri.uri_len);
        }
    }
    PyObject *status = args[0], *body = args[2];
    PyObject *headers = PySequence_Tuple(args[1]);
    if (headers == NULL)
        return NULL;
    long flags = (t->ri.http11 ? UWSGI_RESP_HTTP11 : 0) | (t->ri.head ? UWSGI_RESP_HEAD : 0) |
                 (lane->proto == LANE_HTTP ? UWSGI_RESP_HTTP : 0) | (t->ri.keepalive ? UWSGI_RESP_KEEPALIVE : 0);
    int code = uwsgi_native_status_code(PyBytes_AS_STRING(status), PyBytes_GET_SIZE(status));
    PyObject *built = code < 0 ? (Py_INCREF(Py_None), Py_None)
                               : uwsgi_native_build_response(status, code, headers, body, flags);
    Py_DECREF(headers);
    if (built == NULL)
        return NULL;
    if (built == Py_None) {     /* a large body, a header the lane does not write: the Python path's */
        Py_DECREF(built);
        Py_RETURN_FALSE;
    }
    PyObject *data = PyTuple_GET_ITEM(built, 0);
    int keep = PyObject_IsTrue(PyTuple_GET_ITEM(built, 2));
    size_t headers_size = (size_t)PyLong_AsSsize_t(PyTuple_GET_ITEM(built, 3));
    int header_cnt = (int)PyLong_AsLong(PyTuple_GET_ITEM(built, 4));
    size_t response_size = (size_t)PyLong_AsSsize_t(PyTuple_GET_ITEM(built, 5));
    t->state = DEFER_DONE;      /* from here the fd is answered (and maybe closed): never again */
    struct conn c = {t->fd, t->owned, t->addr, NULL, 0};
    PyObject *answer = lane_deliver(&c, t->owned, data, keep, 0, &t->ri);
    Py_DECREF(built);
    if (lane->sb != NULL)
        uwsgi_sb_end(lane->sb, (size_t)lane->cores[t->core].sb_core, (size_t)app->sb_apps[t->core],
                     (uint64_t)(headers_size + response_size), (int64_t)((mono() - t->ri.started) * 1e6), 0);
    app->served++;
    if (app->after != NULL) {
        PyObject *r = PyObject_CallNoArgs(app->after);
        if (r == NULL)
            PyErr_WriteUnraisable(app->after);
        Py_XDECREF(r);
    }
    /* 2 switches: its first steps, then its completion (what the Python path's core counts) */
    if (lane->log != NULL && answer != NULL)
        lane_log_line(lane, &t->ri, t->core, t->requests, t->ri.started, t->ri.wall, code, response_size, header_cnt,
                      headers_size, app->app_id, 2, " ");
    return answer;
}

/* token.take() -> (fd, addr, modifier1, arg, raw, keepalive): the Python path answers it */
static PyObject *defer_take(LaneDeferred *t, PyObject *unused) {
    (void)unused;
    if (check_pending(t, "take()") < 0)
        return NULL;
    t->state = DEFER_TAKEN;
    return Py_BuildValue("(iOiOOi)", t->fd, t->addr, t->modifier1, t->arg, t->raw, t->ri.keepalive);
}

static void defer_dealloc(LaneDeferred *t) {
    if (t->state == DEFER_PENDING && t->owned && t->fd >= 0) {
        /* nobody will answer it: the client sees its connection close, the log says why */
        PySys_WriteStderr("native lane: a deferred request (%.*s) was dropped unanswered; its connection closed\n",
                          (int)(t->ri.uri_len > 200 ? 200 : t->ri.uri_len), t->text != NULL ? t->ri.uri : "");
        close(t->fd);
    }
    Py_XDECREF(t->lane);
    Py_XDECREF(t->owner);
    Py_XDECREF(t->conn);
    Py_XDECREF(t->addr);
    Py_XDECREF(t->arg);
    Py_XDECREF(t->raw);
    PyMem_Free(t->text);
    PyObject_Free(t);
}

static PyObject *defer_get_state(LaneDeferred *t, void *unused) {
    (void)unused;
    static const char *names[] = {"pending", "done", "taken", "void"};
    return PyUnicode_FromString(names[t->state]);
}

static PyObject *defer_get_conn(LaneDeferred *t, void *unused) {
    (void)unused;
    Py_INCREF(t->conn);
    return t->conn;
}

static int defer_set_conn(LaneDeferred *t, PyObject *value, void *unused) {
    (void)unused;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "conn cannot be deleted");
        return -1;
    }
    Py_INCREF(value);
    Py_SETREF(t->conn, value);
    return 0;
}

static PyObject *defer_get_int(LaneDeferred *t, void *which) {
    return PyLong_FromLong(which == (void *)0 ? t->fd : t->core);
}

static PyObject *defer_get_owner(LaneDeferred *t, void *unused) {
    (void)unused;
    Py_INCREF(t->owner);
    return t->owner;
}

static PyMethodDef defer_methods[] = {
    {"complete", (PyCFunction)(void (*)(void))defer_complete, METH_FASTCALL,
     "complete(status, headers, body) -> the lane's answer (lane.h), None (sent and closed), or False: take() it"},
    {"take", (PyCFunction)defer_take, METH_NOARGS,
     "take() -> (fd, addr, modifier1, arg, raw, keepalive): the Python path answers the request"},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef defer_getset[] = {
    {"state", (getter)defer_get_state, NULL, "pending, done, taken or void", NULL},
    {"conn", (getter)defer_get_conn, (setter)defer_set_conn,
     "the kept-alive Connection it came on (its closing voids the fd), or None", NULL},
    {"fd", (getter)defer_get_int, NULL, "the connection's fd", (void *)0},
    {"core", (getter)defer_get_int, NULL, "the index of the core it runs on (the lane's set_core)", (void *)1},
    {"owner", (getter)defer_get_owner, NULL, "what defer() was given (the lane's driver)", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

PyTypeObject LaneDeferredType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_uwsgi_native.LaneDeferred",
    .tp_basicsize = sizeof(LaneDeferred),
    .tp_dealloc = (destructor)defer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "a lane request whose app answers later (core/cpython/lane_defer.c)",
    .tp_methods = defer_methods,
    .tp_getset = defer_getset,
};
