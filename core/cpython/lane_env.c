/* lane_env.c: the PEP 3333 environ of a request straight from its bytes (lane.h): here a uwsgi
 * packet's vars (core/packet.c); lane_env_http.c reads an HTTP/1.x head of the plain shape.
 * Either is a copy of the lane's base (the constant keys) with the request's vars added, decoded
 * latin-1, as uwsgid.net.protocols + core/cpython/vars.c build it on the Python path. */
#include "lane.h"

static PyObject *s_script_name, *s_url_scheme, *s_https_str, *s_http_str;

/* ---- from a uwsgi packet ------------------------------------------------------------------------ */

static PyObject *key_name(Lane *self, int i, const char *p, size_t n) {
    /* a new reference to the str of var name p[0..n); the names of the last packet are kept
     * per position: behind one front end they repeat in the same order */
    struct keyslot *k = i < LANE_KEYS ? &self->keys[i] : NULL;
    if (k != NULL && k->name != NULL && k->len == n && memcmp(k->raw, p, n) == 0) {
        Py_INCREF(k->name);
        return k->name;
    }
    PyObject *name = PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
    if (name != NULL && k != NULL && n <= LANE_KEY_MAX) {
        PyUnicode_InternInPlace(&name);
        Py_INCREF(name);
        Py_XSETREF(k->name, name);
        k->len = (uint16_t)n;
        memcpy(k->raw, p, n);
    }
    return name;
}

static struct lane_app *app_for(Lane *self, int modifier1) {
    for (int i = 0; i < self->napps; i++)
        if (self->apps[i].modifier1 == modifier1)
            return &self->apps[i];
    return NULL;
}

PyObject *lane_uwsgi_request(Lane *self, const char *buf, size_t len, struct reqinfo *ri) {
    uint8_t m1, m2;
    uint16_t size;
    ri->answer = NULL;
    if (len < UWSGI_HEADER_SIZE)
        return NULL;
    uwsgi_parse_header(buf, len, &m1, &size, &m2);
    /* another modifier, a ping, an HTTP request on this socket, a block over --buffer-size or
     * not all here: the Python path, which answers or logs each as before */
    ri->app = app_for(self, m1);
    if (m2 != 0 || (long)size > self->buffer_size || len < (size_t)UWSGI_HEADER_SIZE + size)
        return NULL;
    const char *block = buf + UWSGI_HEADER_SIZE;
    int max = self->max_vars < LANE_VARS_MAX ? self->max_vars : LANE_VARS_MAX;
    int n = uwsgi_parse_vars(block, size, max, self->offs);
    if (n < 0)
        return NULL;
    const char *scheme = NULL, *https = NULL;
    size_t scheme_len = 0, https_len = 0;
    int script_name = 0;
    ri->uri = ri->method = ri->protocol = ri->remote_addr = ri->remote_user = ri->path = "";
    ri->uri_len = ri->method_len = ri->protocol_len = ri->remote_addr_len = ri->remote_user_len = ri->path_len = 0;
    ri->path_pct = ri->conditional = 0;
    ri->head = 0;
    ri->http11 = 1;
    ri->keepalive = 0;
    for (int i = 0; i < n; i++) {
        const char *k = block + self->offs[4 * i], *v = block + self->offs[4 * i + 2];
        size_t kl = self->offs[4 * i + 1], vl = self->offs[4 * i + 3];
        if (kl == 11 && memcmp(k, "REMOTE_ADDR", 11) == 0) {
            ri->remote_addr = v;
            ri->remote_addr_len = vl;
        } else if (kl == 11 && memcmp(k, "REMOTE_USER", 11) == 0) {
            ri->remote_user = v;
            ri->remote_user_len = vl;
        } else if (kl == 11 && memcmp(k, "SCRIPT_NAME", 11) == 0) {
            script_name = 1;
        } else if (kl == 9 && memcmp(k, "PATH_INFO", 9) == 0) {
            ri->path = v;
            ri->path_len = vl;
        } else if ((kl == 22 && memcmp(k, "HTTP_IF_MODIFIED_SINCE", 22) == 0) ||
                   (kl == 10 && memcmp(k, "HTTP_RANGE", 10) == 0)) {
            ri->conditional = 1;
        }
        if (kl == 5 && memcmp(k, "HTTPS", 5) == 0) {
            https = v;
            https_len = vl;
        } else if (kl == 11 && memcmp(k, "REQUEST_URI", 11) == 0) {
            ri->uri = v;
            ri->uri_len = vl;
        } else if (kl == 12 && memcmp(k, "UWSGI_SCHEME", 12) == 0) {
            scheme = v;
            scheme_len = vl;
        } else if (kl == 14 && memcmp(k, "CONTENT_LENGTH", 14) == 0) {
            if (vl > 0)
                return NULL;    /* a body (nginx sends an empty one with every GET) */
        } else if (kl == 14 && memcmp(k, "REQUEST_METHOD", 14) == 0) {
            ri->head = vl == 4 && memcmp(v, "HEAD", 4) == 0;
            ri->method = v;
            ri->method_len = vl;
        } else if (kl == 15 && memcmp(k, "SERVER_PROTOCOL", 15) == 0) {
            ri->http11 = !(vl == 8 && memcmp(v, "HTTP/1.0", 8) == 0);
            ri->protocol = v;
            ri->protocol_len = vl;
        }
    }
    /* as the Python path counts them: its vars dict gains SCRIPT_NAME when nginx sent none */
    ri->var_cnt = 2 * ((size_t)n + !script_name);
    ri->pktsize = size;
    ri->block = block;
    if (ri->method_len == 0) {
        ri->method = "GET";
        ri->method_len = 3;
    }
    ri->get = ri->method_len == 3 && memcmp(ri->method, "GET", 3) == 0;
    if (lane_static(self, ri, 0) != 0 || ri->app == NULL)
        return NULL;    /* a static file answered (ri->answer), or the Python path's (or an error) */
    if (ri->app->base == NULL)      /* a block app reads the vars itself */
        return PyBytes_FromStringAndSize(block, size);
    PyObject *env = PyDict_Copy(ri->app->base);
    if (env == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        const char *k = block + self->offs[4 * i], *v = block + self->offs[4 * i + 2];
        size_t kl = self->offs[4 * i + 1], vl = self->offs[4 * i + 3];
        /* a CGI server never passes these as HTTP_* (wsgiref.validate) */
        if ((kl == 17 && memcmp(k, "HTTP_CONTENT_TYPE", 17) == 0) ||
            (kl == 19 && memcmp(k, "HTTP_CONTENT_LENGTH", 19) == 0))
            continue;
        PyObject *name = key_name(self, i, k, kl);
        if (name == NULL)
            goto fail;
        PyObject *value = PyUnicode_DecodeLatin1(v, (Py_ssize_t)vl, NULL);
        int bad = value == NULL || PyDict_SetItem(env, name, value) < 0;
        Py_DECREF(name);
        Py_XDECREF(value);
        if (bad)
            goto fail;
    }
    /* SCRIPT_NAME "/" (nginx setups) means the root: PEP 3333 wants "" there */
    PyObject *sn = PyDict_GetItemWithError(env, s_script_name);
    if (sn != NULL && PyUnicode_Check(sn)) {
        Py_ssize_t sl = PyUnicode_GET_LENGTH(sn), end = sl;
        while (end > 0 && PyUnicode_READ_CHAR(sn, end - 1) == '/')
            end--;
        if (end != sl) {
            PyObject *stripped = PyUnicode_Substring(sn, 0, end);
            int bad = stripped == NULL || PyDict_SetItem(env, s_script_name, stripped) < 0;
            Py_XDECREF(stripped);
            if (bad)
                goto fail;
        }
    } else if (PyErr_Occurred())
        goto fail;
    if (scheme != NULL || https != NULL) {
        PyObject *value;
        if (scheme != NULL && scheme_len > 0)
            value = PyUnicode_DecodeLatin1(scheme, (Py_ssize_t)scheme_len, NULL);
        else {
            value = https != NULL && uwsgi_native_https_on(https, https_len) ? s_https_str : s_http_str;
            Py_INCREF(value);
        }
        int bad = value == NULL || PyDict_SetItem(env, s_url_scheme, value) < 0;
        Py_XDECREF(value);
        if (bad)
            goto fail;
    }
    return env;
fail:
    Py_DECREF(env);
    return NULL;
}

int lane_env_init(void) {
    s_script_name = PyUnicode_InternFromString("SCRIPT_NAME");
    s_url_scheme = PyUnicode_InternFromString("wsgi.url_scheme");
    s_http_str = PyUnicode_InternFromString("http");
    s_https_str = PyUnicode_InternFromString("https");
    if (!(s_script_name && s_url_scheme && s_http_str && s_https_str))
        return -1;
    return lane_env_http_init();
}
