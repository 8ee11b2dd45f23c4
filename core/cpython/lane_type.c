/* lane_type.c: the native lane's Python type (lane.h): its set-up (init, set_core, add_app,
 * set_static), what the driver reads back (counts, take, requests, busy_since), and the module's
 * names. The requests themselves: lane.c. */
#include "lane.h"

static PyObject *lane_counts(Lane *self, PyObject *unused) {
    (void)unused;
    /* the requests each app (in add_app's order) completed since the last call */
    PyObject *t = PyTuple_New(self->napps + 1);
    if (t == NULL)
        return NULL;
    for (int i = 0; i <= self->napps; i++) {
        Py_ssize_t *served = i < self->napps ? &self->apps[i].served : &self->static_served;
        PyObject *n = PyLong_FromSsize_t(*served);
        if (n == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, n);
        *served = 0;
    }
    return t;
}

static PyObject *lane_take(Lane *self, PyObject *unused) {
    (void)unused;
    /* the app asked for its request object (uwsgid.plugins.api): the Python path takes the
     * connection now, and the request when the app returns */
    if (self->cur_env == NULL || self->taken || self->deferred != NULL)
        Py_RETURN_NONE;
    self->taken = 1;
    return Py_BuildValue("(iOiOO)", self->cur_fd, self->cur_addr, self->cur_modifier1, self->cur_env,
                         self->cur_raw);
}

/* ---- the type ------------------------------------------------------------------------------- */

static int lane_init(Lane *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"proto", "buffer_size", "max_vars", "keepalive", "watch_lock", "server_name",
                             "server_port", "sb_addr", "log", "log_pid", "log_micros", "ncores", NULL};
    PyObject *watch_lock = Py_None, *server_name = NULL, *server_port = NULL, *log = Py_None;
    unsigned long long sb_addr = 0;
    int ncores = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ili|pOSSKOipi:Lane", kwlist, &self->proto, &self->buffer_size,
                                     &self->max_vars, &self->keepalive, &watch_lock, &server_name, &server_port,
                                     &sb_addr, &log, &self->log_pid, &self->log_micros, &ncores))
        return -1;
    if (self->cores != NULL || ncores < 1 || ncores > 65536) {
        PyErr_SetString(PyExc_ValueError, "Lane: ncores must be 1 to 65536 (and a lane is made once)");
        return -1;
    }
    self->cores = PyMem_Calloc((size_t)ncores, sizeof *self->cores);
    if (self->cores == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->ncores = ncores;
    if (log != Py_None && !PyCallable_Check(log)) {
        PyErr_SetString(PyExc_TypeError, "Lane: log must be None or a callable (log_request)");
        return -1;
    }
    Py_XSETREF(self->log, log == Py_None ? NULL : (Py_INCREF(log), log));
    if (self->proto != LANE_UWSGI && self->proto != LANE_HTTP) {
        PyErr_SetString(PyExc_ValueError, "Lane: proto must be LANE_UWSGI or LANE_HTTP");
        return -1;
    }
    Py_INCREF(watch_lock);
    Py_XSETREF(self->watch_lock, watch_lock);
    Py_XINCREF(server_name);
    Py_XSETREF(self->server_name, server_name);
    Py_XINCREF(server_port);
    Py_XSETREF(self->server_port, server_port);
    self->sb = (char *)(uintptr_t)sb_addr;
    self->cur_fd = -1;
    return 0;
}

static PyObject *lane_set_core(Lane *self, PyObject *args) {
    int i, id;
    Py_ssize_t sb_start = 0, sb_core = 0, sb_static = 0;
    PyObject *core = Py_None;
    if (!PyArg_ParseTuple(args, "ii|nnnO:set_core", &i, &id, &sb_start, &sb_core, &sb_static, &core))
        return NULL;
    if (i < 0 || i >= self->ncores) {
        PyErr_Format(PyExc_ValueError, "set_core: index %d out of 0..%d", i, self->ncores - 1);
        return NULL;
    }
    struct lane_core *c = &self->cores[i];
    PyObject *id_obj = PyLong_FromLong(id);
    if (id_obj == NULL)
        return NULL;
    Py_XSETREF(c->id_obj, id_obj);
    Py_XSETREF(c->core, core == Py_None ? NULL : (Py_INCREF(core), core));
    c->id = id;
    c->sb_start = sb_start;
    c->sb_core = sb_core;
    c->sb_static = sb_static;
    Py_RETURN_NONE;
}

static PyObject *lane_add_app(Lane *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"modifier1", "app", "base", "check", "error_class", "after", "sb_apps", "app_id",
                             "fail", NULL};
    int modifier1, app_id = 0;
    PyObject *app, *base = Py_None, *check = Py_None, *error_class = Py_None, *after = Py_None, *sb_apps = Py_None;
    PyObject *fail = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO|OOOOOiO:add_app", kwlist, &modifier1, &app, &base, &check,
                                     &error_class, &after, &sb_apps, &app_id, &fail))
        return NULL;
    if (sb_apps != Py_None && (!PyTuple_CheckExact(sb_apps) || PyTuple_GET_SIZE(sb_apps) != self->ncores)) {
        PyErr_SetString(PyExc_TypeError, "add_app: sb_apps must be None or a tuple of one offset per core");
        return NULL;
    }
    Py_ssize_t *offsets = PyMem_Calloc((size_t)self->ncores, sizeof *offsets);
    if (offsets == NULL)
        return PyErr_NoMemory();
    for (int i = 0; sb_apps != Py_None && i < self->ncores; i++) {
        offsets[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(sb_apps, i));
        if (offsets[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(offsets);
            return NULL;
        }
    }
    if (self->napps == LANE_APPS || (self->proto == LANE_HTTP && self->napps == 1)) {
        PyMem_Free(offsets);
        PyErr_SetString(PyExc_ValueError, "add_app: no room for another app on this lane");
        return NULL;
    }
    if (base != Py_None && (!PyDict_Check(base) || !PyCallable_Check(check) || !PyExceptionClass_Check(error_class))) {
        PyMem_Free(offsets);
        PyErr_SetString(PyExc_TypeError, "add_app: a WSGI app needs a dict base, a check and an error class");
        return NULL;
    }
    struct lane_app *a = &self->apps[self->napps++];
    a->modifier1 = modifier1;
    a->app_id = app_id;
    a->sb_apps = offsets;
    a->served = 0;
    Py_INCREF(app);
    a->app = app;
#define KEEP(field, obj) do { a->field = (obj) == Py_None ? NULL : (Py_INCREF(obj), (obj)); } while (0)
    KEEP(base, base);
    KEEP(check, check);
    KEEP(error_class, error_class);
    KEEP(after, after);
    KEEP(fail, fail);
#undef KEEP
    if (a->check == NULL) {     /* a block app: start_response is never called; any callable will do */
        Py_INCREF(app);
        a->check = app;
        Py_INCREF(PyExc_RuntimeError);
        a->error_class = PyExc_RuntimeError;
    }
    Py_RETURN_NONE;
}

static PyObject *lane_set_static(Lane *self, PyObject *args) {
    PyObject *entries, *prefixes;
    if (!PyArg_ParseTuple(args, "O!O:set_static", &PyDict_Type, &entries, &prefixes))
        return NULL;
    if (prefixes != Py_None) {
        if (!PyTuple_CheckExact(prefixes)) {
            PyErr_SetString(PyExc_TypeError, "set_static: prefixes must be a tuple of bytes or None");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++)
            if (!PyBytes_CheckExact(PyTuple_GET_ITEM(prefixes, i))) {
                PyErr_SetString(PyExc_TypeError, "set_static: prefixes must be a tuple of bytes or None");
                return NULL;
            }
    }
    Py_INCREF(entries);
    Py_XSETREF(self->static_entries, entries);
    Py_XSETREF(self->static_prefixes, prefixes == Py_None ? NULL : (Py_INCREF(prefixes), prefixes));
    Py_RETURN_NONE;
}

static void lane_dealloc(Lane *self) {
    Py_XDECREF(self->route_pre);
    Py_XDECREF(self->route_post);
    Py_XDECREF(self->static_entries);
    Py_XDECREF(self->static_prefixes);
    for (int i = 0; i < self->napps; i++) {
        struct lane_app *a = &self->apps[i];
        Py_XDECREF(a->app);
        Py_XDECREF(a->base);
        Py_XDECREF(a->check);
        Py_XDECREF(a->error_class);
        Py_XDECREF(a->after);
        Py_XDECREF(a->fail);
        PyMem_Free(a->sb_apps);
    }
    for (int i = 0; i < self->ncores; i++) {
        Py_XDECREF(self->cores[i].id_obj);
        Py_XDECREF(self->cores[i].core);
    }
    PyMem_Free(self->cores);
    Py_XDECREF(self->watch_lock);
    Py_XDECREF(self->log);
    Py_XDECREF(self->server_name);
    Py_XDECREF(self->server_port);
    Py_XDECREF(self->cur_env);
    Py_XDECREF(self->cur_addr);
    for (int i = 0; i < LANE_KEYS; i++) {
        Py_XDECREF(self->keys[i].name);
        Py_XDECREF(self->hkeys[i].name);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *lane_get_busy_since(Lane *self, void *unused) {
    (void)unused;
    return PyFloat_FromDouble(self->busy_since);
}

static PyMethodDef lane_methods[] = {
    {"serve", (PyCFunction)(void (*)(void))lane_serve, METH_FASTCALL,
     "serve(lfd, batch, core) -> (served, kind, ...): accept and serve up to batch connections on core (lane.h)"},
    {"handle", (PyCFunction)(void (*)(void))lane_handle, METH_FASTCALL,
     "handle(fd, data, addr, core) -> (served, kind, ...): a kept-alive HTTP connection's next request (lane.h)"},
    {"add_app", (PyCFunction)(void (*)(void))lane_add_app, METH_VARARGS | METH_KEYWORDS,
     "add_app(modifier1, app, base=None, check=None, error_class=None, after=None, sb_apps=None, app_id=0, fail=None): "
     "the app of the requests of modifier1 (a WSGI app with a base environ, else a block app: lane.h)"},
    {"counts", (PyCFunction)lane_counts, METH_NOARGS,
     "counts() -> the requests each app (add_app's order), then the static files, completed since the last call"},
    {"set_static", (PyCFunction)lane_set_static, METH_VARARGS,
     "set_static(entries, prefixes): answer the small files of the worker's file cache (lane_static.c)"},
    {"set_routes", (PyCFunction)lane_set_routes, METH_VARARGS,
     "set_routes(pre, post): run the internal routing's chains around each request (lane_route.c)"},
    {"set_core", (PyCFunction)lane_set_core, METH_VARARGS,
     "set_core(index, core_id, sb_start=0, sb_core=0, sb_static=0, core=None): a core requests may run on, with its "
     "scoreboard slots and its Python object (whose wait the lane reads)"},
    {"defer", (PyCFunction)lane_defer, METH_O,
     "defer(owner) -> a token: the block app inside the lane answers its request later (lane_defer.c)"},
    {"take", (PyCFunction)lane_take, METH_NOARGS,
     "take() -> (fd, addr, modifier1, environ or block, raw) of the request inside the app, which the Python "
     "path takes over; None outside"},
    {NULL, NULL, 0, NULL}
};

static PyObject *lane_get_requests(Lane *self, void *unused) {
    (void)unused;
    return PyLong_FromLongLong(self->requests);
}

static int lane_set_requests(Lane *self, PyObject *value, void *unused) {
    (void)unused;
    long long n = value != NULL ? PyLong_AsLongLong(value) : -1;
    if (n < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "requests: a count (0 or more)");
        return -1;
    }
    self->requests = n;
    return 0;
}

static PyGetSetDef lane_getset[] = {
    {"requests", (getter)lane_get_requests, (setter)lane_set_requests,
     "the worker's request count the next log line goes on from (the driver sets it before each call)", NULL},
    {"busy_since", (getter)lane_get_busy_since, NULL,
     "time.monotonic() when the app's call began, 0.0 while no app runs", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

/* A Lane is ~28 KB, 20 of them buf and offs, which a request writes before it reads them:
 * PyType_GenericAlloc's memset would make all of it resident, so private in every thread of a
 * worker, though a request of a few hundred bytes uses a page of each. Only what comes before
 * buf (the fields and the name caches) starts zeroed. */
static PyObject *lane_alloc(PyTypeObject *type, Py_ssize_t nitems) {
    (void)nitems;
    Lane *self = PyObject_Malloc(sizeof(Lane));
    if (self == NULL)
        return PyErr_NoMemory();
    memset(self, 0, offsetof(Lane, buf));
    return (PyObject *)PyObject_Init((PyObject *)self, type);
}

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_uwsgi_native.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "the native lane of a one-core loop (core/cpython/lane.c, uwsgid/server/native_lane.py)",
    .tp_methods = lane_methods,
    .tp_getset = lane_getset,
    .tp_init = (initproc)lane_init,
    .tp_alloc = lane_alloc,
    .tp_new = PyType_GenericNew,
};

int uwsgi_native_lane_init(PyObject *m) {
    if (lane_serve_init() < 0 || lane_env_init() < 0 || PyType_Ready(&LaneStartResponseType) < 0 ||
        PyType_Ready(&LaneDeferredType) < 0 || PyType_Ready(&LaneType) < 0)
        return -1;
    Py_INCREF(&LaneType);
    if (PyModule_AddObject(m, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(&LaneType);
        return -1;
    }
    static const struct { const char *name; int value; } consts[] = {
        {"LANE_UWSGI", LANE_UWSGI}, {"LANE_HTTP", LANE_HTTP}, {"LANE_IDLE", LANE_IDLE}, {"LANE_FULL", LANE_FULL},
        {"LANE_START", LANE_START}, {"LANE_RESUME", LANE_RESUME}, {"LANE_TAIL", LANE_TAIL},
        {"LANE_GONE", LANE_GONE}, {"LANE_KEEP", LANE_KEEP}, {"LANE_CLOSE", LANE_CLOSE},
        {"LANE_DEFER", LANE_DEFER}};
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++)
        if (PyModule_AddIntConstant(m, consts[i].name, consts[i].value) < 0)
            return -1;
    return 0;
}
