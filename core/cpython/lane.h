/* lane.h: private to the native lane of _uwsgi_native (issue 16; the Python side and the whole
 * design: uwsgid/server/native_lane.py). lane.c: serve() / handle(); lane_type.c: the Lane type;
 * lane_env.c, lane_env_http.c: the environ straight from a uwsgi packet, an HTTP head; lane_sr.c: the
 * start_response the app gets. */
#ifndef UWSGI_LANE_H
#define UWSGI_LANE_H

#include "common.h"

#include <sys/socket.h>
#include <time.h>

/* LANE_BUF: the first read (a request the size of the buffer or more goes the Python way);
 * LANE_VARS_MAX: a packet or head with more vars goes the Python way, which applies --max-vars
 * itself, as a head with more than LANE_FIELDS_MAX fields; LANE_KEYS, LANE_KEY_MAX: the name
 * caches' positions and longest raw name */
enum { LANE_BUF = 16384, LANE_KEYS = 64, LANE_KEY_MAX = 40, LANE_VARS_MAX = 256, LANE_FIELDS_MAX = 128 };

enum { LANE_UWSGI = 0, LANE_HTTP = 1 };

/* serve() and handle() answer (served, kind, ...): served, the requests completed; a negative
 * kind: accept() failed with -kind. addr: the peer's raw sockaddr (bytes) on an HTTP socket,
 * None on a uwsgi socket (the client's address is in the packet). */
enum lane_kind {
    LANE_IDLE = 0,      /* nothing more to accept (EAGAIN) */
    LANE_FULL = 1,      /* the batch is done */
    LANE_START = 2,     /* (fd, addr, data): not the lane's; the Python path reads on after data */
    LANE_RESUME = 3,    /* (fd, addr, modifier1, arg, raw, status, headers, written, result, exc,
                         * keepalive, start_response, stepped): the app ran; the Python path goes on
                         * from there; stepped: None, or a body's first step done by the lane
                         * (state, iterator, item, error: lane_iter.c). arg: what the app got; raw: a uwsgi packet's vars block, None over
                         * HTTP; start_response: the WSGI app's (its forward is set), None for a block app */
    LANE_TAIL = 4,      /* (fd, addr, rest, keepalive): the kernel did not take the whole response */
    LANE_GONE = 5,      /* (errno, uri): the client went away during the response (fd closed by
                         * serve; handle leaves it to its caller, which closes it) */
    LANE_KEEP = 6,      /* (fd, addr): served, the connection kept alive for its next request */
    LANE_CLOSE = 7,     /* handle() only: served with its last bytes queued: close it now */
    LANE_DEFER = 8      /* (token): the app answers later, through the token (lane_defer.c); the
                         * fd is the token's until then */
};

struct keyslot {
    uint16_t len;
    char raw[LANE_KEY_MAX];
    PyObject *name;
};

/* An app the lane calls, by the modifier1 of its requests. A WSGI app (base: a dict) gets the
 * environ (a copy of base with the request's vars) and the lane's start_response, and returns its
 * body; a block app (base: NULL, the Lua plugin's) gets the request's uwsgi vars block (bytes: an
 * HTTP head is encoded as one) and returns (status line, headers, body) when its response is
 * whole, anything else for the Python path to go on with. after: NULL, or called with no
 * argument after each response the lane sent (the Lua state's per-request end). */
struct lane_app {
    int modifier1, app_id;
    PyObject *app, *base, *check, *error_class, *after;
    PyObject *fail;             /* NULL, or fail(exc, environ, closing): an app error after its response went out */
    Py_ssize_t *sb_apps;        /* per core: the scoreboard's per-app counters (0: none) */
    Py_ssize_t served;          /* requests it completed since counts() last asked */
};

enum { LANE_APPS = 2 };

struct reqinfo;

/* One of the loop's cores (--async N: N of them): the lane runs each request on the one the
 * driver names (a free one), with its scoreboard slots. */
struct lane_core {
    int id;
    PyObject *id_obj;           /* the environ's uwsgi.core */
    PyObject *core;             /* NULL, or the Python core (its `wait`: uwsgid.plugins.api) */
    Py_ssize_t sb_start, sb_core, sb_static;
};

typedef struct {
    PyObject_HEAD
    int proto;                  /* LANE_UWSGI / LANE_HTTP */
    int max_vars;
    int keepalive;              /* HTTP keep-alive allowed (--http-keepalive) */
    long buffer_size;
    struct lane_app apps[LANE_APPS];
    int napps;
    PyObject *server_name, *server_port;    /* HTTP: SERVER_NAME, SERVER_PORT (bytes) of a block */
    PyObject *watch_lock;       /* None, or keepalive_watch's lock, held while the app returns */
    PyObject *log;              /* NULL, or log_request: the default request line is written */
    int log_pid, log_micros;
    long long requests;         /* the worker's, as its log line counts them (set before each call) */
    char *sb;                   /* the scoreboard's memory, NULL: none */
    struct lane_core *cores;
    int ncores, cur;            /* cur: the core of the call in progress */
    /* static files (lane_static.c): the worker's small-file answers, path -> (second, uwsgi head
     * block, HTTP head block, header count, body) (uwsgid/static/filecache.py); the mountpoints a
     * static path starts with (NULL: any path may be one) */
    PyObject *static_entries, *static_prefixes;
    Py_ssize_t static_served;
    /* the internal routing's calls (lane_route.c), NULL: no routes */
    PyObject *route_pre, *route_post;
    /* the request inside the app, for take() */
    int cur_fd, cur_modifier1;
    PyObject *cur_env, *cur_addr, *cur_raw;
    int taken;
    struct reqinfo *cur_ri;     /* the request inside the app, for defer() */
    PyObject *deferred;         /* its token once the app called defer() (lane_defer.c) */
    double busy_since;
    struct keyslot keys[LANE_KEYS];     /* uwsgi var names by position */
    struct keyslot hkeys[LANE_KEYS];    /* HTTP header names by position -> their CGI names */
    /* last, and not zeroed by lane_alloc (lane_type.c): written before they are read */
    char buf[LANE_BUF];
    uint32_t offs[4 * LANE_VARS_MAX];
} Lane;

/* what the request builders tell about the request */
struct reqinfo {
    const char *uri;
    size_t uri_len;
    int head, http11, keepalive;
    struct lane_app *app;       /* the app it goes to */
    /* for the request log line (uwsgid/observe/reqlog.py default_line) */
    const char *method, *protocol, *remote_addr, *remote_user;
    size_t method_len, protocol_len, remote_addr_len, remote_user_len;
    size_t var_cnt, pktsize;
    const char *block;          /* a uwsgi packet's vars block (NULL over HTTP), for the Python path */
    /* static files (lane_static.c) */
    const char *path;           /* PATH_INFO as received (percent-encoded over HTTP: path_pct) */
    size_t path_len;
    int path_pct, get, conditional;
    PyObject *answer;           /* a static file's whole response (a new reference), or NULL */
    size_t answer_head;         /* its head's size */
    int answer_cnt;             /* its header count */
    double started;             /* when the app was called (monotonic), and the wall clock then */
    time_t wall;
    char addr_buf[48];          /* an HTTP peer's address as text (INET6_ADDRSTRLEN) */
    char port_buf[8];           /* and its port */
};

/* lane_env.c (a uwsgi packet), lane_env_http.c (an HTTP head): the app's argument (the environ,
 * or the vars block of a block app), or NULL: with an error set (a failure), or without (the
 * Python path takes the connection). addr: the peer's sockaddr (HTTP). */
PyObject *lane_uwsgi_request(Lane *self, const char *buf, size_t len, struct reqinfo *ri);
PyObject *lane_http_request(Lane *self, const char *buf, size_t len, const struct sockaddr *addr,
                            socklen_t addrlen, struct reqinfo *ri);
int lane_env_init(void);
int lane_env_http_init(void);   /* lane_env_http.c: the HTTP head reader's tables, called by lane_env_init */

/* lane_static.c: 0, not a static path (the app's); 1, a small file's answer, set in ri->answer;
 * 2, a static path the lane leaves to the Python path (a file not in the cache this second, a
 * conditional or ranged GET, HEAD); -1, an error. */
int lane_static(Lane *self, struct reqinfo *ri, int http);

/* lane_route.c: set_routes(pre, post); pre (block: a uwsgi packet's vars block, NULL over
 * HTTP): 1, the request goes on (add: headers to append,
 * state: post's argument, each NULL or a new reference), 0, the Python path takes it, -1, an
 * error; lane_route_headers: headers (a reference it takes) with add appended; post: 0 when the
 * routes said `donotlog`. */
PyObject *lane_set_routes(Lane *self, PyObject *args);
int lane_route_pre(Lane *self, PyObject *arg, const char *block, size_t block_len, PyObject **add,
                   PyObject **state);
PyObject *lane_route_headers(PyObject *headers, PyObject *add);
int lane_route_post(Lane *self, PyObject *state, int code, size_t body_size);

/* lane.c: the methods that serve (lane_type.c has the type); the request log line and the
 * sending of a whole response, which a deferred request's completion shares (lane_defer.c) */
PyObject *lane_serve(Lane *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *lane_handle(Lane *self, PyObject *const *args, Py_ssize_t nargs);
int lane_serve_init(void);
struct conn {
    int fd;
    int owned;              /* serve(): the lane closes it when done; handle(): its caller does */
    PyObject *addr;         /* the peer's sockaddr (bytes) or None */
    const struct sockaddr *sa;
    socklen_t salen;
};
void lane_log_line(Lane *self, const struct reqinfo *ri, int core, long long requests, double started, time_t wall,
                   int code, size_t response_size, int header_cnt, size_t headers_size, int app_id, int switches,
                   const char *via);
PyObject *lane_deliver(struct conn *c, int owned, PyObject *data, int keep, Py_ssize_t served,
                       const struct reqinfo *ri);

/* lane_defer.c: a request whose app answers later (LANE_DEFER) */
extern PyTypeObject LaneDeferredType;
PyObject *lane_defer(Lane *self, PyObject *owner);
PyObject *lane_defer_settle(Lane *self, PyObject *token, int ok, int owned, Py_ssize_t served);

/* lane_sr.c */
extern PyTypeObject LaneStartResponseType;
typedef struct {
    PyObject_HEAD
    PyObject *status, *headers;     /* what the app gave */
    PyObject *bstatus, *bheaders;   /* checked: bytes, tuple of (bytes, bytes) */
    PyObject *written;              /* write() data, NULL: none */
    PyObject *check, *error_class;
    PyObject *forward;              /* set by the Python path that took the request over: calls go there */
} LaneStartResponse;
LaneStartResponse *lane_start_response(PyObject *check, PyObject *error_class);
/* lane_iter.c: a WSGI body that is an iterable, stepped once by the lane (LANE_STEP_NONE: not
 * stepped; ITEM: it yielded first; END: it stopped; RAISED: it raised exc, an Exception) */
enum { LANE_STEP_NONE = 0, LANE_STEP_ITEM, LANE_STEP_END, LANE_STEP_RAISED };
struct lane_body {
    PyObject *it, *first, *exc;     /* iter(result), its first item, its error: owned */
    int state;
};
/* 1: stepped (b set); 0: not a body the lane steps (nothing consumed); -1: a BaseException
 * that is no Exception was raised (the caller closes result). bheaders: start_response's checked
 * headers, NULL before it was called */
int lane_iter_first(struct lane_body *b, PyObject *result, PyObject *env, PyObject *core, PyObject *bheaders);
/* 1 when the app armed a wait on core (the core runs the body's steps once it fires) */
int lane_iter_waiting(PyObject *core);
/* the Content-Length of checked headers (a tuple of bytes pairs), -1: none or not a length */
long long lane_iter_declared(PyObject *bheaders);
/* once the body is out: the steps left and close(): 0, 1 (a step's error, reported through fail:
 * the connection closes; close()'s error is reported only), -1 (a BaseException that is no Exception) */
int lane_iter_finish(struct lane_body *b, PyObject *result, PyObject *env, PyObject *fail, PyObject *error_class);
/* the error being raised, normalized, with its traceback on it (a new reference); cleared */
PyObject *lane_fetch_exc(void);
void lane_body_clear(struct lane_body *b);

#endif
