/* lane_iter.c: a WSGI body that is an iterable other than a list or tuple (a framework's:
 * werkzeug's ClosingIterator, Django's response) on the native lane (lane.h, lane.c).
 *
 * The lane steps a body whose length the app declared (Content-Length: what frameworks send), or
 * whose headers are not known yet, once. When that step ends the body (StopIteration), or yields
 * bytes of the very length declared, the whole body is known
 * before the first byte: lane.c sends head and body in one send, as for a list. The steps left
 * then run with nothing held back (lane_iter_finish), so no flush deadline is needed: the rule of
 * the Python path's _stream (plugins/cffi/cffi_plugin/response.py), which takes every other
 * shape (several chunks, no declared length, a str item, a wait armed, ...) with the step's
 * outcome (native_lane.py's _stepped puts it back in front of the iterator). close() is always
 * called, once, by whoever ends the body. */
#include "lane.h"

/* Whether the lane may step result: an iterable that is not a str/bytes (an app bug the Python
 * path names), nor wsgi.file_wrapper's (sent with sendfile there), nor a body behind a wait the
 * app armed (uwsgi.async_sleep & co: the core runs the first step once it fires), nor a stream
 * (its headers given, no length declared: the Python path's from its first step on, at no cost
 * here). bheaders: the checked headers, NULL before start_response (a generator calling it on
 * its first step). */
static int steppable(PyObject *result, PyObject *env, PyObject *core, PyObject *bheaders) {
    if (PyBytes_Check(result) || PyUnicode_Check(result) || PyList_CheckExact(result) || PyTuple_CheckExact(result))
        return 0;
    if (bheaders != NULL && lane_iter_declared(bheaders) <= 0)
        return 0;
    if (Py_TYPE(result)->tp_iter == NULL && !PySequence_Check(result))
        return 0;
    PyObject *fw = PyDict_GetItemString(env, "wsgi.file_wrapper");     /* borrowed */
    if (fw != NULL && PyType_Check(fw) && PyObject_TypeCheck(result, (PyTypeObject *)fw))
        return 0;
    return lane_iter_waiting(core) == 0;
}

int lane_iter_waiting(PyObject *core) {
    if (core == NULL)
        return 0;
    PyObject *w = PyObject_GetAttrString(core, "wait");
    if (w == NULL) {
        PyErr_Clear();          /* a core without waits: nothing armed */
        return 0;
    }
    int armed = w != Py_None;
    Py_DECREF(w);
    return armed;
}

/* the error being raised, normalized, with its traceback on it (a new reference) */
PyObject *lane_fetch_exc(void) {
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
}

int lane_iter_first(struct lane_body *b, PyObject *result, PyObject *env, PyObject *core, PyObject *bheaders) {
    b->it = b->first = b->exc = NULL;
    b->state = LANE_STEP_NONE;
    if (!steppable(result, env, core, bheaders))
        return 0;
    PyObject *it = PyObject_GetIter(result);
    if (it == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        PyErr_Clear();          /* the Python path calls iter() again and answers the error */
        return 0;
    }
    b->it = it;
    PyObject *item = PyIter_Next(it);
    if (item != NULL) {
        b->first = item;
        b->state = LANE_STEP_ITEM;
    } else if (!PyErr_Occurred()) {
        b->state = LANE_STEP_END;
    } else if (PyErr_ExceptionMatches(PyExc_Exception)) {
        b->exc = lane_fetch_exc();
        b->state = LANE_STEP_RAISED;
    } else {
        return -1;              /* SystemExit and the like: the caller closes the body and stops */
    }
    return 1;
}

long long lane_iter_declared(PyObject *bheaders) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(bheaders); i++) {
        PyObject *pair = PyTuple_GET_ITEM(bheaders, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            return -1;
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value))
            return -1;
        if (PyBytes_GET_SIZE(name) == 14 && uwsgi_strncaseeq(PyBytes_AS_STRING(name), 14, "content-length", 14))
            return parse_length(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    }
    return -1;
}

/* An error of the app after its response went out, for the plugin to log and count
 * (fail(exc, environ, closing): closing, raised by close()); without fail, Python's
 * unraisable hook. The error is the one being raised. */
static void report(PyObject *fail, PyObject *env, int closing) {
    if (fail == NULL) {
        PyErr_WriteUnraisable(NULL);
        return;
    }
    PyObject *exc = lane_fetch_exc();
    if (exc == NULL)
        return;
    PyObject *r = PyObject_CallFunctionObjArgs(fail, exc, env, closing ? Py_True : Py_False, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(fail);
    Py_XDECREF(r);
    Py_DECREF(exc);
}

int lane_iter_finish(struct lane_body *b, PyObject *result, PyObject *env, PyObject *fail, PyObject *error_class) {
    int failed = 0;
    if (b->state == LANE_STEP_ITEM) {
        /* the body is out: items past its declared length are dropped, as the Python path's
         * flush drops them (a bytes-like one too; any other type is the app's error) */
        PyObject *item;
        while ((item = PyIter_Next(b->it)) != NULL) {
            int bad = !PyBytes_Check(item) && !PyByteArray_Check(item) && !PyMemoryView_Check(item);
            if (bad)
                PyErr_Format(error_class, "response body must be bytes, not %.100s", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            if (bad)
                break;
        }
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                return -1;
            report(fail, env, 0);
            failed = 1;
        }
    }
    b->state = LANE_STEP_END;
    /* close()'s error is logged, and the connection goes on (the body was whole) */
    PyObject *close = PyObject_GetAttrString(result, "close");
    if (close == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear();
        else
            report(fail, env, 1);
        return failed;
    }
    PyObject *r = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        report(fail, env, 1);
    }
    Py_XDECREF(r);
    return failed;
}

void lane_body_clear(struct lane_body *b) {
    Py_CLEAR(b->it);
    Py_CLEAR(b->first);
    Py_CLEAR(b->exc);
}
