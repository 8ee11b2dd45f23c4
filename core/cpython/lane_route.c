/* lane_route.c: the internal routing's calls on the native lane (lane.h; the Python side and
 * the whole design: uwsgid/routing/lane.py). With routes set, a request's request chain runs
 * through one Python call before its app (pre), the headers it added are appended to the app's,
 * and the final chain runs through one more call once the response is out (post). */
#include "lane.h"

PyObject *lane_set_routes(Lane *self, PyObject *args) {
    PyObject *pre, *post;
    if (!PyArg_ParseTuple(args, "OO:set_routes", &pre, &post))
        return NULL;
    if (!PyCallable_Check(pre) || !PyCallable_Check(post)) {
        PyErr_SetString(PyExc_TypeError, "set_routes(pre, post): two callables");
        return NULL;
    }
    Py_INCREF(pre);
    Py_INCREF(post);
    Py_XSETREF(self->route_pre, pre);
    Py_XSETREF(self->route_post, post);
    Py_RETURN_NONE;
}

int lane_route_pre(Lane *self, PyObject *arg, const char *block, size_t block_len, PyObject **add,
                   PyObject **state) {
    *add = *state = NULL;
    /* a packet's vars as received: the routes read them as the Python path does (an environ
     * holds defaults for the vars a packet lacks) */
    PyObject *raw = block != NULL ? PyBytes_FromStringAndSize(block, (Py_ssize_t)block_len)
                                  : (Py_INCREF(Py_None), Py_None);
    if (raw == NULL)
        return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(self->route_pre, arg, raw, NULL);
    Py_DECREF(raw);
    if (r == NULL)
        return -1;
    if (r == Py_None) {         /* the chain did nothing the lane must carry */
        Py_DECREF(r);
        return 1;
    }
    if (r == Py_False) {        /* a route needs the Python path */
        Py_DECREF(r);
        return 0;
    }
    if (!PyTuple_CheckExact(r) || PyTuple_GET_SIZE(r) != 2 || !PyTuple_CheckExact(PyTuple_GET_ITEM(r, 0))) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "the lane's route pre() must return None, False or (headers, state)");
        return -1;
    }
    PyObject *h = PyTuple_GET_ITEM(r, 0), *st = PyTuple_GET_ITEM(r, 1);
    if (PyTuple_GET_SIZE(h) > 0) {
        Py_INCREF(h);
        *add = h;
    }
    if (st != Py_None) {
        Py_INCREF(st);
        *state = st;
    }
    Py_DECREF(r);
    return 1;
}

PyObject *lane_route_headers(PyObject *headers, PyObject *add) {
    if (headers == NULL || add == NULL)
        return headers;
    PyObject *all = PySequence_Concat(headers, add);     /* the app's, then the routes' (as _edit) */
    Py_DECREF(headers);
    return all;
}

int lane_route_post(Lane *self, PyObject *state, int code, size_t body_size) {
    PyObject *r = PyObject_CallFunction(self->route_post, "Oin", state, code, (Py_ssize_t)body_size);
    if (r == NULL) {    /* the response is out: reported, not raised */
        PyErr_WriteUnraisable(self->route_post);
        return 1;
    }
    int logged = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (logged < 0) {
        PyErr_WriteUnraisable(self->route_post);
        return 1;
    }
    return logged;
}
