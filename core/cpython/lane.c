/* lane.c: the native lane of _uwsgi_native (issue 16; the design and the Python side:
 * uwsgid/server/native_lane.py): serve() and handle(); the Lane type is in lane_type.c. A
 * one-core loop's common request without a Python object per step: accept4, read, the environ
 * straight from the bytes (lane_env.c, lane_env_http.c), the WSGI callable
 * called with the lane's start_response (lane_sr.c), a list or tuple body serialised with its
 * head (uwsgi_native_build_response) and sent in one send (with the FIN when the connection
 * ends), the scoreboard updated (core/scoreboard.c). Python runs the app and nothing else.
 *
 * Whatever the lane does not take goes back to the Python path at the point where it stopped,
 * with what it has (the kinds in lane.h). It keeps no state between requests but its caches. */
#include "lane.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

static PyObject *s_uwsgi_core;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* the app returned: keepalive_watch may be acting on this loop's idle connections while the app
 * ran (uwsgid/server/keepalive_watch.py); its lock makes its check and act atomic with this */
static int app_returned(Lane *self) {
    if (self->watch_lock == Py_None) {
        self->busy_since = 0.0;
        return 0;
    }
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);    /* the app's error, if any, waits */
    PyObject *r = PyObject_CallMethod(self->watch_lock, "acquire", NULL);
    if (r == NULL) {
        Py_XDECREF(exc_type);
        Py_XDECREF(exc_value);
        Py_XDECREF(exc_tb);
        return -1;
    }
    Py_DECREF(r);
    self->busy_since = 0.0;
    r = PyObject_CallMethod(self->watch_lock, "release", NULL);
    PyErr_Restore(exc_type, exc_value, exc_tb);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The request log line of uwsgid/observe/reqlog.py's default_line (uWSGI's), through the
 * server's log_request; an error there is reported, not raised (the response is out). */
void lane_log_line(Lane *self, const struct reqinfo *ri, int core, long long requests, double started, time_t wall,
                   int code, size_t response_size, int header_cnt, size_t headers_size, int app_id, int switches,
                   const char *via) {
    char when[32];
    struct tm tm;
    localtime_r(&wall, &tm);
    strftime(when, sizeof when, "%a %b %e %H:%M:%S %Y", &tm);    /* time.ctime's format */
    unsigned long long total = self->sb != NULL ? 0 : (unsigned long long)requests;
    if (self->sb != NULL)
        memcpy(&total, self->sb, 8);
    double took = mono() - started;
    long long elapsed = (long long)(took * (self->log_micros ? 1e6 : 1e3));
    char line[8192];
    int n = snprintf(line, sizeof line,
                     "[pid: %d|app: %d|req: %lld/%llu] %.*s (%.*s) {%zu vars in %zu bytes} [%s] %.*s %.*s => "
                     "generated %zu bytes in %lld %s%s(%.*s %d) %d headers in %zu bytes (%d switches on core %d)\n",
                     self->log_pid, app_id, requests, total, (int)ri->remote_addr_len, ri->remote_addr,
                     (int)ri->remote_user_len, ri->remote_user, ri->var_cnt, ri->pktsize, when, (int)ri->method_len,
                     ri->method, (int)ri->uri_len, ri->uri, response_size, elapsed,
                     self->log_micros ? "micros" : "msecs", via, (int)ri->protocol_len, ri->protocol, code,
                     header_cnt, headers_size, switches, self->cores[core].id);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    PyObject *data = PyBytes_FromStringAndSize(line, n);
    PyObject *r = data != NULL ? PyObject_CallOneArg(self->log, data) : NULL;
    if (r == NULL)
        PyErr_WriteUnraisable(self->log);
    Py_XDECREF(r);
    Py_XDECREF(data);
}

static PyObject *start(Py_ssize_t served, struct conn *c, const char *data, size_t n) {
    return Py_BuildValue("(niiOy#)", served, LANE_START, c->fd, c->addr, data, (Py_ssize_t)n);
}

/* Send a whole response (data): keep, the connection stays for its next request. The tuple for
 * Python, or None (served and closed here), or NULL on an error. */
PyObject *lane_deliver(struct conn *c, int owned, PyObject *data, int keep, Py_ssize_t served,
                       const struct reqinfo *ri) {
    size_t len = (size_t)PyBytes_GET_SIZE(data);
    const char *out = PyBytes_AS_STRING(data);
    int sent;
    if (keep) {
        ssize_t w = send(c->fd, out, len, MSG_NOSIGNAL);
        sent = w < 0 ? -errno : (int)w;
    } else {
        sent = uwsgi_send_last(c->fd, out, len);    /* the FIN follows at once: close() below or the caller's */
    }
    PyObject *answer;
    if (sent >= 0 && (size_t)sent == len) {
        if (keep)
            answer = Py_BuildValue("(niiO)", served + 1, LANE_KEEP, c->fd, c->addr);
        else if (owned) {
            close(c->fd);
            Py_INCREF(Py_None);
            answer = Py_None;   /* served and closed: the batch goes on */
        } else
            answer = Py_BuildValue("(ni)", served + 1, LANE_CLOSE);
    } else if (sent >= 0 || sent == -EAGAIN || sent == -EINTR) {
        size_t at = sent > 0 ? (size_t)sent : 0;
        answer = Py_BuildValue("(niiOy#i)", served + 1, LANE_TAIL, c->fd, c->addr, out + at,
                               (Py_ssize_t)(len - at), keep);
        if (answer == NULL && owned)
            close(c->fd);
    } else {
        if (owned)
            close(c->fd);
        answer = Py_BuildValue("(niiy#)", served + 1, LANE_GONE, -sent, ri->uri, (Py_ssize_t)ri->uri_len);
    }
    return answer;
}

/* close() of a body the lane stepped, on a way that sends nothing more (a BaseException on its
 * way up, or no memory for the hand-off): the error being raised is kept */
static void close_body(PyObject *result) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = PyObject_CallMethod(result, "close", NULL);
    if (r == NULL && !PyErr_ExceptionMatches(PyExc_AttributeError))
        PyErr_WriteUnraisable(result);
    PyErr_Clear();
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
}

/* whether lane_deliver()'s answer leaves the fd open for Python (LANE_KEEP, LANE_TAIL) */
static int holds_fd(PyObject *answer) {
    if (!PyTuple_Check(answer) || PyTuple_GET_SIZE(answer) < 3)
        return 0;
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(answer, 1));
    return kind == LANE_KEEP || kind == LANE_TAIL;
}

/* lane_deliver()'s answer for a connection that must close after all (an app error once its body
 * was out): NULL on an error */
static PyObject *unkeep(PyObject *answer, struct conn *c, int owned) {
    if (!holds_fd(answer))
        return answer;      /* closed already, LANE_CLOSE or LANE_GONE */
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(answer, 1));
    Py_ssize_t served = PyLong_AsSsize_t(PyTuple_GET_ITEM(answer, 0));
    PyObject *r;
    if (kind == LANE_KEEP) {
        if (owned) {
            close(c->fd);
            Py_INCREF(Py_None);
            r = Py_None;
        } else {
            r = Py_BuildValue("(ni)", served, LANE_CLOSE);
        }
    } else {                /* LANE_TAIL: its rest is sent, then the connection closes */
        r = Py_BuildValue("(niiOOi)", served, LANE_TAIL, c->fd, c->addr, PyTuple_GET_ITEM(answer, 4), 0);
        if (r == NULL && owned)
            close(c->fd);
    }
    Py_DECREF(answer);
    return r;
}

/* A small static file's answer (lane_static.c), counted as serve.py counts it: static_requests,
 * no app, no switch, " via sendfile() " in its log line (uWSGI's words for a static body). */
static PyObject *serve_static(Lane *self, struct conn *c, struct reqinfo *ri, Py_ssize_t served) {
    double started = mono();
    time_t wall = time(NULL);
    self->requests++;
    if (self->sb != NULL) {
        struct lane_core *core = &self->cores[self->cur];
        uwsgi_sb_begin(self->sb, (size_t)core->sb_start, ri->uri, ri->uri_len, 256);
        uint64_t n;
        memcpy(&n, self->sb + core->sb_static, 8);
        n++;
        memcpy(self->sb + core->sb_static, &n, 8);
    }
    PyObject *data = ri->answer;
    ri->answer = NULL;
    size_t len = (size_t)PyBytes_GET_SIZE(data);
    PyObject *answer = lane_deliver(c, c->owned, data, ri->keepalive, served, ri);
    if (self->sb != NULL)
        uwsgi_sb_end(self->sb, (size_t)self->cores[self->cur].sb_core, 0, (uint64_t)len,
                     (int64_t)((mono() - started) * 1e6), 0);
    self->static_served++;
    if (self->log != NULL && answer != NULL)
        lane_log_line(self, ri, self->cur, self->requests, started, wall, 200, len - ri->answer_head, ri->answer_cnt, ri->answer_head, -1, 0,
                 len > ri->answer_head ? " via sendfile() " : " ");
    Py_DECREF(data);
    return answer;
}

/* The app's whole response as (status line, headers, body) new references, with the routes'
 * headers added (radd): 1; 0, a shape the Python path goes on with (a stream, a str body, a
 * request the app took, ...); -1, an error. A WSGI app's answer is what start_response got and a
 * list or tuple body, or a stepped body that is whole (lane_iter.c); a block app's a tuple of
 * (status line, headers, body) of bytes. */
static int response_parts(Lane *self, int wsgi, LaneStartResponse *sr, PyObject *result, int stepped,
                          const struct lane_body *b, PyObject *radd, PyObject **status_out,
                          PyObject **headers_out, PyObject **body_out) {
    PyObject *status, *headers, *body;
    if (wsgi) {
        if (self->taken || sr->written != NULL || sr->bstatus == NULL)
            return 0;
        if (stepped) {
            /* whole before the first byte: it ended, or yielded the length it declared */
            if (b->state == LANE_STEP_ITEM && PyBytes_CheckExact(b->first) && PyBytes_GET_SIZE(b->first) > 0 &&
                PyBytes_GET_SIZE(b->first) == lane_iter_declared(sr->bheaders) &&
                !lane_iter_waiting(self->cores[self->cur].core))
                body = PyTuple_Pack(1, b->first);
            else if (b->state == LANE_STEP_END)
                body = PyTuple_New(0);
            else
                return 0;
        } else if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
            body = PySequence_Tuple(result);
        } else {
            return 0;
        }
        status = sr->bstatus;
        headers = sr->bheaders;
        Py_INCREF(status);
        Py_INCREF(headers);
    } else {
        /* (status line, headers, body) of bytes: the whole response; anything else goes on in Python */
        if (self->taken || !PyTuple_CheckExact(result) || PyTuple_GET_SIZE(result) != 3 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(result, 0)) || !PyBytes_CheckExact(PyTuple_GET_ITEM(result, 2)))
            return 0;
        status = PyTuple_GET_ITEM(result, 0);
        Py_INCREF(status);
        headers = PySequence_Tuple(PyTuple_GET_ITEM(result, 1));
        body = PyTuple_GET_ITEM(result, 2);
        Py_INCREF(body);
    }
    headers = lane_route_headers(headers, radd);
    if (headers == NULL || body == NULL) {
        Py_DECREF(status);
        Py_XDECREF(headers);
        Py_XDECREF(body);
        return -1;
    }
    *status_out = status;
    *headers_out = headers;
    *body_out = body;
    return 1;
}

/* One request, its bytes in buf[0..n): the tuple for Python (a new reference), or NULL on an
 * error (an fd the lane owns is closed then). */
static PyObject *serve_request(Lane *self, struct conn *c, const char *buf, size_t n, Py_ssize_t served) {
    struct reqinfo ri;
    PyObject *env = self->proto == LANE_HTTP ? lane_http_request(self, buf, n, c->sa, c->salen, &ri)
                                             : lane_uwsgi_request(self, buf, n, &ri);
    if (env == NULL) {
        if (PyErr_Occurred()) {
            Py_CLEAR(ri.answer);
            if (c->owned)
                close(c->fd);
            return NULL;
        }
        if (ri.answer != NULL)
            return serve_static(self, c, &ri, served);
        return start(served, c, buf, n);
    }
    struct lane_app *app = ri.app;
    int wsgi = app->base != NULL;
    if (wsgi && PyDict_SetItem(env, s_uwsgi_core, self->cores[self->cur].id_obj) < 0) {
        Py_DECREF(env);
        if (c->owned)
            close(c->fd);
        return NULL;
    }
    PyObject *radd = NULL, *rstate = NULL;     /* the routes' headers and state (lane_route.c) */
    if (self->route_pre != NULL) {
        int go = lane_route_pre(self, env, ri.block, ri.pktsize, &radd, &rstate);
        if (go <= 0) {
            Py_DECREF(env);
            if (go == 0)
                return start(served, c, buf, n);    /* as a request not of the lane's shape */
            if (c->owned)
                close(c->fd);
            return NULL;
        }
    }
    double started = ri.started = mono();
    time_t wall = ri.wall = time(NULL);
    self->requests++;           /* the worker's count, this request included, as Core.run counts it */
    if (self->sb != NULL)
        uwsgi_sb_begin(self->sb, (size_t)self->cores[self->cur].sb_start, ri.uri, ri.uri_len, 256);
    LaneStartResponse *sr = lane_start_response(app->check, app->error_class);
    if (sr == NULL) {
        Py_XDECREF(radd);
        Py_XDECREF(rstate);
        Py_DECREF(env);
        if (c->owned)
            close(c->fd);
        return NULL;
    }
    PyObject *raw = ri.block != NULL ? PyBytes_FromStringAndSize(ri.block, (Py_ssize_t)ri.pktsize)
                                     : (Py_INCREF(Py_None), Py_None);
    if (raw == NULL) {
        Py_XDECREF(radd);
        Py_XDECREF(rstate);
        Py_DECREF(sr);
        Py_DECREF(env);
        if (c->owned)
            close(c->fd);
        return NULL;
    }
    self->cur_fd = c->fd;
    self->cur_modifier1 = app->modifier1;
    self->cur_raw = raw;        /* the lane's reference, dropped below */
    Py_INCREF(env);
    self->cur_env = env;
    Py_INCREF(c->addr);
    self->cur_addr = c->addr;
    self->taken = 0;
    self->cur_ri = &ri;
    self->busy_since = started;
    PyObject *result = wsgi ? PyObject_CallFunctionObjArgs(app->app, env, (PyObject *)sr, NULL)
                            : PyObject_CallOneArg(app->app, env);
    /* an iterable body's first step, still the app's call (lane_iter.c) */
    struct lane_body b = {NULL, NULL, NULL, LANE_STEP_NONE};
    int stepped = wsgi && result != NULL && !self->taken && sr->written == NULL
                      ? lane_iter_first(&b, result, env, self->cores[self->cur].core, sr->bheaders) : 0;
    if (stepped < 0) {
        close_body(result);
        Py_CLEAR(result);       /* raised as the app's own SystemExit would be, below */
        stepped = 0;
    }
    int lock_failed = app_returned(self) < 0;
    self->cur_fd = -1;
    self->cur_raw = NULL;
    self->cur_ri = NULL;
    Py_CLEAR(self->cur_env);
    Py_CLEAR(self->cur_addr);
    /* from here the fd is the Python path's once the app took its request (take()) */
    int owned = c->owned && !self->taken;

    PyObject *exc = NULL, *data = NULL, *answer = NULL, *stepped_as = NULL;
    if (self->deferred != NULL) {   /* the app answers later through its token (lane_defer.c) */
        PyObject *token = self->deferred;
        self->deferred = NULL;
        int ok = !lock_failed && result != NULL;    /* else the token is void: as if not deferred */
        answer = lane_defer_settle(self, token, ok, owned, served);
        if (ok) {
            if (answer == NULL)
                goto error;     /* the token is void: the fd is still the lane's to close */
            goto out;
        }
    }
    if (lock_failed)
        goto error;             /* (a stepped body is closed there; result released at out) */
    if (result == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))    /* SystemExit and the like: not the app's error */
            goto error;
        exc = lane_fetch_exc();
        goto resume;
    }
    PyObject *status, *headers, *body;
    int whole = response_parts(self, wsgi, sr, result, stepped, &b, radd, &status, &headers, &body);
    if (whole < 0)
        goto error;
    if (whole == 0)
        goto resume;
    long flags = (ri.http11 ? UWSGI_RESP_HTTP11 : 0) | (ri.head ? UWSGI_RESP_HEAD : 0) |
                 (self->proto == LANE_HTTP ? UWSGI_RESP_HTTP : 0) | (ri.keepalive ? UWSGI_RESP_KEEPALIVE : 0);
    int code = uwsgi_native_status_code(PyBytes_AS_STRING(status), PyBytes_GET_SIZE(status));
    PyObject *built = code < 0 ? (Py_INCREF(Py_None), Py_None)
                               : uwsgi_native_build_response(status, code, headers, body, flags);
    Py_DECREF(status);
    Py_DECREF(headers);
    Py_DECREF(body);
    if (built == NULL)
        goto error;
    if (built == Py_None) {     /* a shape for the Python path (a large body, a str item, ...) */
        Py_DECREF(built);
        goto resume;
    }
    data = PyTuple_GET_ITEM(built, 0);
    Py_INCREF(data);
    int keep = PyObject_IsTrue(PyTuple_GET_ITEM(built, 2));
    size_t headers_size = (size_t)PyLong_AsSsize_t(PyTuple_GET_ITEM(built, 3));
    int header_cnt = (int)PyLong_AsLong(PyTuple_GET_ITEM(built, 4));
    size_t response_size = (size_t)PyLong_AsSsize_t(PyTuple_GET_ITEM(built, 5));
    size_t tx = headers_size + response_size;
    Py_DECREF(built);
    answer = lane_deliver(c, owned, data, keep, served, &ri);
    int failed = 0;
    if (stepped && answer != NULL) {
        /* the body is out: its steps left and close() (lane_iter.c); an app error there ends the
         * connection, as the Python path's cut body does */
        failed = lane_iter_finish(&b, result, env, app->fail, app->error_class);
        stepped = 0;        /* closed */
        if (failed < 0) {   /* a BaseException on its way up: the connection ends here */
            if (owned && holds_fd(answer))
                close(c->fd);
            Py_CLEAR(answer);
            goto out;
        }
        if (failed && (answer = unkeep(answer, c, owned)) == NULL)
            goto out;       /* unkeep closed what it owned */
    }
    if (self->sb != NULL)
        uwsgi_sb_end(self->sb, (size_t)self->cores[self->cur].sb_core, (size_t)app->sb_apps[self->cur], (uint64_t)tx,
                     (int64_t)((mono() - started) * 1e6), failed);
    app->served++;
    if (app->after != NULL) {   /* the app's per-request end, once its response is out */
        PyObject *r = PyObject_CallNoArgs(app->after);
        if (r == NULL)
            PyErr_WriteUnraisable(app->after);
        Py_XDECREF(r);
    }
    if ((rstate == NULL || answer == NULL || lane_route_post(self, rstate, code, response_size)) && self->log != NULL)
        lane_log_line(self, &ri, self->cur, self->requests, started, wall, code, response_size, header_cnt,
                      headers_size, app->app_id, 1, " ");
    goto out;
resume:
    /* the Python path goes on with this request (the fd is its from now on); a body the lane
     * stepped goes with its step's outcome: (LANE_STEP_*, iterator, item or None, error or None) */
    if (stepped && b.state != LANE_STEP_NONE)
        stepped_as = Py_BuildValue("(iOOO)", b.state, b.it, b.first ? b.first : Py_None, b.exc ? b.exc : Py_None);
    if (stepped && stepped_as == NULL)
        goto error;
    answer = Py_BuildValue("(niiOiOOOOOOOiOO)", served, LANE_RESUME, c->fd, c->addr, app->modifier1, env, raw,
                           sr->status ? sr->status : Py_None, sr->headers ? sr->headers : Py_None,
                           sr->written ? sr->written : Py_None, result ? result : Py_None,
                           exc ? exc : Py_None, ri.keepalive, wsgi ? (PyObject *)sr : Py_None,
                           stepped_as ? stepped_as : Py_None);
    if (answer == NULL && owned)
        close(c->fd);
    goto out;
error:
    if (stepped && result != NULL)
        close_body(result);     /* nobody else will: the Python path does not get it */
    if (owned)
        close(c->fd);
out:
    Py_XDECREF(radd);
    Py_XDECREF(rstate);
    lane_body_clear(&b);
    Py_XDECREF(stepped_as);
    Py_DECREF(raw);
    Py_XDECREF(data);
    Py_XDECREF(exc);
    Py_XDECREF(result);
    Py_DECREF(sr);
    Py_DECREF(env);
    return answer;
}

/* the core (an index of set_core's) the call's requests run on */
static int use_core(Lane *self, PyObject *arg) {
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0 || i >= self->ncores || self->cores[i].id_obj == NULL) {
        PyErr_Format(PyExc_ValueError, "core %ld: not a core set_core described", i);
        return -1;
    }
    self->cur = (int)i;
    return 0;
}

PyObject *lane_serve(Lane *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "serve(lfd, batch, core) takes 3 arguments");
        return NULL;
    }
    int lfd = _PyLong_AsInt(args[0]);
    Py_ssize_t batch = PyLong_AsSsize_t(args[1]);
    if (((lfd == -1 || batch == -1) && PyErr_Occurred()) || use_core(self, args[2]) < 0)
        return NULL;
    Py_ssize_t served = 0;
    for (Py_ssize_t i = 0; i < batch; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        int http = self->proto == LANE_HTTP;
        int fd = accept4(lfd, http ? (struct sockaddr *)&ss : NULL, http ? &sslen : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return NULL;
                continue;
            }
            if (errno == EAGAIN || errno == ECONNABORTED)
                return Py_BuildValue("(ni)", served, LANE_IDLE);
            return Py_BuildValue("(ni)", served, -errno);
        }
        ssize_t n = read(fd, self->buf, sizeof self->buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            close(fd);      /* gone before its request: nothing to answer (the Python path's way) */
            continue;
        }
        PyObject *addr = http ? PyBytes_FromStringAndSize((const char *)&ss, sslen) : (Py_INCREF(Py_None), Py_None);
        if (addr == NULL) {
            close(fd);
            return NULL;
        }
        struct conn c = {fd, 1, addr, (const struct sockaddr *)&ss, sslen};
        PyObject *r;
        if (n < 0 || (size_t)n == sizeof self->buf)
            r = start(served, &c, self->buf, n < 0 ? 0 : (size_t)n);
        else
            r = serve_request(self, &c, self->buf, (size_t)n, served);
        Py_DECREF(addr);
        if (r != Py_None)
            return r;
        Py_DECREF(r);
        served++;
    }
    return Py_BuildValue("(ni)", served, LANE_FULL);
}

PyObject *lane_handle(Lane *self, PyObject *const *args, Py_ssize_t nargs) {
    /* a request its Connection read: the next one of a kept-alive HTTP connection, or the packet
     * of a uwsgi connection that was accepted before it came (a unix socket has no
     * TCP_DEFER_ACCEPT); data holds all of it. addr: the peer's sockaddr (HTTP), None (uwsgi) */
    if (nargs != 4 || !PyBytes_Check(args[1]) || !(PyBytes_Check(args[2]) || args[2] == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "handle(fd, data: bytes, addr: bytes | None, core) takes 4 arguments");
        return NULL;
    }
    int fd = _PyLong_AsInt(args[0]);
    if ((fd == -1 && PyErr_Occurred()) || use_core(self, args[3]) < 0)
        return NULL;
    PyObject *data = args[1], *addr = args[2];
    int http = self->proto == LANE_HTTP;
    struct conn c = {fd, 0, addr, NULL, 0};
    if (http) {
        if (addr == Py_None || (size_t)PyBytes_GET_SIZE(addr) < sizeof(sa_family_t))
            return start(0, &c, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
        c.sa = (const struct sockaddr *)PyBytes_AS_STRING(addr);
        c.salen = (socklen_t)PyBytes_GET_SIZE(addr);
    } else if (addr != Py_None) {
        return start(0, &c, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
    }
    /* the bytes object is held by our caller for the whole call: its buffer stays */
    PyObject *r = serve_request(self, &c, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data), 0);
    if (r == Py_None) {     /* cannot happen: handle() does not own the fd */
        Py_DECREF(r);
        return Py_BuildValue("(ni)", (Py_ssize_t)1, LANE_CLOSE);
    }
    return r;
}

int lane_serve_init(void) {
    s_uwsgi_core = PyUnicode_InternFromString("uwsgi.core");
    return s_uwsgi_core != NULL ? 0 : -1;
}
