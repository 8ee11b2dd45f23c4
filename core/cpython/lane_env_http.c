/* lane_env_http.c: the PEP 3333 environ of a request straight from an HTTP/1.x head of the plain
 * shape (lane.h; lane_env.c does the same from a uwsgi packet), or the head as a uwsgi vars block
 * for a block app.
 *
 * The reader takes a strict subset of what the Python path (llhttp) accepts, and returns
 * NULL (no error set: the Python path reads the same bytes and answers) for anything else: a
 * method other than GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH; a target that is not /path
 * of RFC 3986 characters; a version other than HTTP/1.0 and 1.1; a line not ending in CRLF; a
 * header name not a token or with "_"; a value with a control or non-ASCII byte; a repeated
 * field; Transfer-Encoding, Expect, Upgrade; Content-Length other than "0"; Connection other
 * than "close" or "keep-alive"; HTTP/1.1 without Host, or a Host that is not host[:port]; more
 * than --max-vars vars, or a head over --buffer-size; anything after the head. */
#include "lane.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static PyObject *s_http11, *s_http10, *s_get, *s_remote_addr, *s_remote_port, *s_server_protocol,
    *s_request_method, *s_request_uri, *s_query_string, *s_path_info, *s_empty;
static unsigned char tchar[256], urlchar[256], valuechar[256], hostchar[256];

/* ---- from an HTTP head ---------------------------------------------------------------------------- */

static int known_method(const char *m, size_t n) {
    switch (n) {
    case 3:
        return memcmp(m, "GET", 3) == 0 || memcmp(m, "PUT", 3) == 0;
    case 4:
        return memcmp(m, "HEAD", 4) == 0 || memcmp(m, "POST", 4) == 0;
    case 5:
        return memcmp(m, "PATCH", 5) == 0;
    case 6:
        return memcmp(m, "DELETE", 6) == 0;
    case 7:
        return memcmp(m, "OPTIONS", 7) == 0;
    }
    return 0;
}

/* a new reference to the CGI name of header name p[0..n) (HTTP_X_Y, or CONTENT_TYPE and
 * CONTENT_LENGTH), or NULL without an error for a name the Python path judges (one with "_",
 * which it drops, or a long one); the names of the last head are kept by position */
static PyObject *header_var(Lane *self, int i, const char *p, size_t n) {
    struct keyslot *k = i < LANE_KEYS ? &self->hkeys[i] : NULL;
    if (k != NULL && k->name != NULL && k->len == n && memcmp(k->raw, p, n) == 0) {
        Py_INCREF(k->name);
        return k->name;
    }
    if (n > LANE_KEY_MAX || memchr(p, '_', n) != NULL)
        return NULL;
    char var[5 + LANE_KEY_MAX];
    size_t len;
    if (uwsgi_strncaseeq(p, n, "content-type", 12) || uwsgi_strncaseeq(p, n, "content-length", 14)) {
        len = 0;
    } else {
        memcpy(var, "HTTP_", 5);
        len = 5;
    }
    for (size_t j = 0; j < n; j++) {
        char c = p[j];
        var[len++] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    PyObject *name = PyUnicode_FromStringAndSize(var, (Py_ssize_t)len);
    if (name == NULL)
        return NULL;
    PyUnicode_InternInPlace(&name);
    if (k != NULL) {
        Py_INCREF(name);
        Py_XSETREF(k->name, name);
        k->len = (uint16_t)n;
        memcpy(k->raw, p, n);
    }
    return name;
}

/* PATH_INFO: the path percent-decoded as urllib.parse.unquote_to_bytes (a "%" not followed by
 * two hex digits stays as it is) */
static PyObject *path_info(const char *p, size_t n, int pct) {
    if (!pct)
        return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
    char small[512];
    char *tmp = n <= sizeof small ? small : PyMem_Malloc(n);
    if (tmp == NULL)
        return PyErr_NoMemory();
    size_t o = uwsgi_native_unquote(p, n, tmp);
    PyObject *r = PyUnicode_DecodeLatin1(tmp, (Py_ssize_t)o, NULL);
    if (tmp != small)
        PyMem_Free(tmp);
    return r;
}

static int set_str(PyObject *env, PyObject *key, const char *p, size_t n) {
    PyObject *v = PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
    int r = v == NULL ? -1 : PyDict_SetItem(env, key, v);
    Py_XDECREF(v);
    return r;
}

/* the peer's address and port as text ("" for a unix socket's peer) */
static void remote_text(const struct sockaddr *sa, socklen_t salen, char *host, size_t hcap, char *port,
                        size_t pcap) {
    host[0] = port[0] = '\0';
    if (sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hcap);
        snprintf(port, pcap, "%u", (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hcap);
        snprintf(port, pcap, "%u", (unsigned)ntohs(in6->sin6_port));
    }
}


struct field {
    const char *name, *value;
    size_t nlen, vlen;
};

/* an HTTP head of the lane's shape, its parts pointing into the read buffer */
struct head {
    const char *method, *target, *query;    /* query: at the "?", NULL: none */
    size_t mlen, tlen;
    int pct, http11, conn_close, conn_keep;
    int nf;
    struct field f[LANE_FIELDS_MAX];
};

/* 1: buf[0..len) is exactly one head of the lane's shape (the file's comment), read into h;
 * 0: the Python path's */
static int parse_head(Lane *self, const char *buf, size_t len, struct head *h) {
    const char *p = buf, *end = buf + len;
    /* the request line: method SP /target SP HTTP/1.x CRLF */
    h->method = p;
    while (p < end && tchar[(unsigned char)*p])
        p++;
    h->mlen = (size_t)(p - h->method);
    if (p == end || *p != ' ' || !known_method(h->method, h->mlen))
        return 0;
    h->target = ++p;
    h->query = NULL;
    h->pct = 0;
    if (p == end || *p != '/')
        return 0;
    while (p < end && *p != ' ') {
        unsigned char c = (unsigned char)*p;
        if (!urlchar[c])
            return 0;
        if (c == '?' && h->query == NULL)
            h->query = p;
        else if (c == '%' && h->query == NULL)
            h->pct = 1;
        p++;
    }
    h->tlen = (size_t)(p - h->target);
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '0' && p[8] != '1') || p[9] != '\r' ||
        p[10] != '\n')
        return 0;
    h->http11 = p[8] == '1';
    p += 11;

    /* the fields: name ":" OWS value OWS CRLF, then CRLF */
    size_t hsize = h->tlen;
    int has_host = 0;
    h->nf = h->conn_close = h->conn_keep = 0;
    for (;;) {
        if (end - p < 2)
            return 0;
        if (p[0] == '\r') {
            if (p[1] != '\n')
                return 0;
            p += 2;
            break;
        }
        const char *name = p;
        while (p < end && tchar[(unsigned char)*p])
            p++;
        size_t nlen = (size_t)(p - name);
        if (nlen == 0 || p == end || *p != ':' || h->nf == LANE_FIELDS_MAX)
            return 0;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *value = p;
        while (p < end && valuechar[(unsigned char)*p])
            p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return 0;
        const char *vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        size_t vlen = (size_t)(vend - value);
        p += 2;
        if (uwsgi_strncaseeq(name, nlen, "transfer-encoding", 17) || uwsgi_strncaseeq(name, nlen, "expect", 6) ||
            uwsgi_strncaseeq(name, nlen, "upgrade", 7))
            return 0;
        if (uwsgi_strncaseeq(name, nlen, "content-length", 14) && !(vlen == 1 && value[0] == '0'))
            return 0;       /* a body: the Python path */
        if (uwsgi_strncaseeq(name, nlen, "connection", 10)) {
            if (uwsgi_strncaseeq(value, vlen, "close", 5))
                h->conn_close = 1;
            else if (uwsgi_strncaseeq(value, vlen, "keep-alive", 10))
                h->conn_keep = 1;
            else
                return 0;
        }
        if (uwsgi_strncaseeq(name, nlen, "host", 4)) {
            for (size_t i = 0; i < vlen; i++)
                if (!hostchar[(unsigned char)value[i]])
                    return 0;   /* an IPv6 literal, or a Host the Python path judges */
            const char *colon = memchr(value, ':', vlen);
            if (colon != NULL)
                for (const char *c = colon + 1; c < value + vlen; c++)
                    if (*c < '0' || *c > '9')
                        return 0;
            has_host = 1;
        }
        struct field *f = &h->f[h->nf++];
        f->name = name;
        f->nlen = nlen;
        f->value = value;
        f->vlen = vlen;
        hsize += nlen + vlen + 4;
    }
    /* a body or the next request already here, or a limit the Python path words */
    return p == end && hsize <= (size_t)self->buffer_size && 10 + h->nf <= self->max_vars && (has_host || !h->http11);
}

static void head_info(Lane *self, const struct head *h, const struct sockaddr *sa, socklen_t salen,
                      struct reqinfo *ri) {
    ri->uri = h->target;
    ri->uri_len = h->tlen;
    ri->head = h->mlen == 4 && memcmp(h->method, "HEAD", 4) == 0;
    ri->http11 = h->http11;
    ri->keepalive = self->keepalive && (h->http11 ? !h->conn_close : h->conn_keep);
    ri->method = h->method;
    ri->method_len = h->mlen;
    ri->protocol = h->http11 ? "HTTP/1.1" : "HTTP/1.0";
    ri->protocol_len = 8;
    remote_text(sa, salen, ri->addr_buf, sizeof ri->addr_buf, ri->port_buf, sizeof ri->port_buf);
    ri->remote_addr = ri->addr_buf;
    ri->remote_addr_len = strlen(ri->addr_buf);
    ri->remote_user = "";
    ri->remote_user_len = 0;
    ri->block = NULL;
    ri->get = h->mlen == 3 && memcmp(h->method, "GET", 3) == 0;
    ri->path = h->target;
    ri->path_len = (size_t)((h->query != NULL ? h->query : h->target + h->tlen) - h->target);
    ri->path_pct = h->pct;
    ri->conditional = 0;
    for (int i = 0; i < h->nf; i++)
        if (uwsgi_strncaseeq(h->f[i].name, h->f[i].nlen, "if-modified-since", 17) ||
            uwsgi_strncaseeq(h->f[i].name, h->f[i].nlen, "range", 5))
            ri->conditional = 1;
    /* the vars of HttpParser: its 5 constant ones, the request line's 5, one per field */
    const char *path_end = h->query != NULL ? h->query : h->target + h->tlen;
    size_t plen = (size_t)(path_end - h->target);
    size_t qlen = h->query != NULL ? (size_t)(h->target + h->tlen - h->query - 1) : 0;
    size_t sz = 11 + 0 + 11 + (self->server_name ? (size_t)PyBytes_GET_SIZE(self->server_name) : 0) +
                11 + (self->server_port ? (size_t)PyBytes_GET_SIZE(self->server_port) : 0) +
                11 + ri->remote_addr_len + 11 + strlen(ri->port_buf) + 15 + 8 + 14 + h->mlen + 11 + h->tlen + 12 + qlen +
                9 + plen;
    for (int i = 0; i < h->nf; i++) {
        const struct field *f = &h->f[i];
        int special = uwsgi_strncaseeq(f->name, f->nlen, "content-type", 12) ||
                      uwsgi_strncaseeq(f->name, f->nlen, "content-length", 14);
        sz += (special ? 0 : 5) + f->nlen + f->vlen;
    }
    if (h->pct) {       /* PATH_INFO counts decoded */
        char small[512];
        char *tmp = plen <= sizeof small ? small : PyMem_Malloc(plen);
        if (tmp != NULL) {
            sz -= plen - uwsgi_native_unquote(h->target, plen, tmp);
            if (tmp != small)
                PyMem_Free(tmp);
        }
    }
    ri->var_cnt = 2 * (10 + (size_t)h->nf);
    ri->pktsize = sz + 4 * (10 + (size_t)h->nf);
}

static PyObject *http_environ(Lane *self, struct head *h, const struct reqinfo *ri, PyObject *base) {
    PyObject *env = PyDict_Copy(base);
    if (env == NULL)
        return NULL;
    PyObject *m = h->mlen == 3 && memcmp(h->method, "GET", 3) == 0
                      ? (Py_INCREF(s_get), s_get) : PyUnicode_DecodeLatin1(h->method, (Py_ssize_t)h->mlen, NULL);
    const char *path_end = h->query != NULL ? h->query : h->target + h->tlen;
    PyObject *path = path_info(h->target, (size_t)(path_end - h->target), h->pct);
    int bad = m == NULL || path == NULL ||
              set_str(env, s_remote_addr, ri->remote_addr, ri->remote_addr_len) < 0 ||
              set_str(env, s_remote_port, ri->port_buf, strlen(ri->port_buf)) < 0 ||
              PyDict_SetItem(env, s_server_protocol, h->http11 ? s_http11 : s_http10) < 0 ||
              PyDict_SetItem(env, s_request_method, m) < 0 || set_str(env, s_request_uri, h->target, h->tlen) < 0 ||
              (h->query != NULL ? set_str(env, s_query_string, h->query + 1,
                                          (size_t)(h->target + h->tlen - h->query - 1))
                                : PyDict_SetItem(env, s_query_string, s_empty)) < 0 ||
              PyDict_SetItem(env, s_path_info, path) < 0;
    Py_XDECREF(m);
    Py_XDECREF(path);
    if (bad)
        goto fail;
    for (int i = 0; i < h->nf; i++) {
        PyObject *var = header_var(self, i, h->f[i].name, h->f[i].nlen);
        if (var == NULL)
            goto fail;
        int seen = PyDict_Contains(env, var);
        if (seen != 0) {            /* a repeated field (joined or refused by the Python path) */
            Py_DECREF(var);
            goto fail;
        }
        int r = set_str(env, var, h->f[i].value, h->f[i].vlen);
        Py_DECREF(var);
        if (r < 0)
            goto fail;
    }
    return env;
fail:
    Py_DECREF(env);
    return NULL;
}

/* ---- an HTTP head as a uwsgi vars block, for a block app ---------------------------------------- */

struct blk {
    char *p;
    size_t len, cap;
    int bad;
};

static void var(struct blk *b, const char *k, size_t kl, const char *v, size_t vl) {
    int n = b->bad ? -1 : uwsgi_encode_var(b->p + b->len, b->cap - b->len, k, kl, v, vl);
    if (n < 0)
        b->bad = 1;
    else
        b->len += (size_t)n;
}

static void var_s(struct blk *b, const char *k, const char *v, size_t vl) {
    var(b, k, strlen(k), v, vl);
}

/* the vars of the Python path's HttpParser, in its order, as a block; NULL without an error
 * for a repeated field or a name with "_" (the Python path's) */
static PyObject *http_block(Lane *self, struct head *h, const struct reqinfo *ri) {
    /* every var's key and value fit in the head they come from, plus the constant ones */
    size_t cap = 2 * LANE_BUF + 512 + (size_t)PyBytes_GET_SIZE(self->server_name);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (out == NULL)
        return NULL;
    struct blk b = {PyBytes_AS_STRING(out), 0, cap, 0};
    var_s(&b, "SCRIPT_NAME", "", 0);
    var_s(&b, "SERVER_NAME", PyBytes_AS_STRING(self->server_name), (size_t)PyBytes_GET_SIZE(self->server_name));
    var_s(&b, "SERVER_PORT", PyBytes_AS_STRING(self->server_port), (size_t)PyBytes_GET_SIZE(self->server_port));
    var_s(&b, "REMOTE_ADDR", ri->remote_addr, ri->remote_addr_len);
    var_s(&b, "REMOTE_PORT", ri->port_buf, strlen(ri->port_buf));
    var_s(&b, "SERVER_PROTOCOL", h->http11 ? "HTTP/1.1" : "HTTP/1.0", 8);
    var_s(&b, "REQUEST_METHOD", h->method, h->mlen);
    var_s(&b, "REQUEST_URI", h->target, h->tlen);
    const char *path_end = h->query != NULL ? h->query : h->target + h->tlen;
    if (h->query != NULL)
        var_s(&b, "QUERY_STRING", h->query + 1, (size_t)(h->target + h->tlen - h->query - 1));
    else
        var_s(&b, "QUERY_STRING", "", 0);
    size_t plen = (size_t)(path_end - h->target);
    if (h->pct) {       /* decoded in place in the block: it can only shrink */
        size_t at = b.len;
        var_s(&b, "PATH_INFO", h->target, plen);
        if (!b.bad) {
            char *v = b.p + at + 2 + 9 + 2;
            size_t n = uwsgi_native_unquote(v, plen, v);
            b.p[at + 2 + 9] = (char)(n & 0xff);
            b.p[at + 2 + 9 + 1] = (char)(n >> 8);
            b.len = at + 2 + 9 + 2 + n;
        }
    } else {
        var_s(&b, "PATH_INFO", h->target, plen);
    }
    for (int i = 0; i < h->nf && !b.bad; i++) {
        const struct field *f = &h->f[i];
        char key[5 + LANE_KEY_MAX];
        size_t kl = 0;
        if (f->nlen > LANE_KEY_MAX || memchr(f->name, '_', f->nlen) != NULL)
            goto python;
        if (!uwsgi_strncaseeq(f->name, f->nlen, "content-type", 12) &&
            !uwsgi_strncaseeq(f->name, f->nlen, "content-length", 14)) {
            memcpy(key, "HTTP_", 5);
            kl = 5;
        }
        for (size_t j = 0; j < f->nlen; j++) {
            char c = f->name[j];
            key[kl++] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        }
        for (int j = 0; j < i; j++)     /* a repeated field: the Python path joins or refuses it */
            if (uwsgi_strncaseeq(h->f[j].name, h->f[j].nlen, f->name, f->nlen))
                goto python;
        var(&b, key, kl, f->value, f->vlen);
    }
    if (b.bad)
        goto python;
    if (_PyBytes_Resize(&out, (Py_ssize_t)b.len) < 0)
        return NULL;
    return out;
python:
    Py_DECREF(out);
    return NULL;
}

PyObject *lane_http_request(Lane *self, const char *buf, size_t len, const struct sockaddr *addr,
                            socklen_t addrlen, struct reqinfo *ri) {
    struct head h;
    ri->app = self->napps > 0 ? &self->apps[0] : NULL;     /* the listener's modifier1 */
    ri->answer = NULL;
    if (!parse_head(self, buf, len, &h))
        return NULL;
    head_info(self, &h, addr, addrlen, ri);
    if (lane_static(self, ri, 1) != 0 || ri->app == NULL)
        return NULL;    /* a static file answered (ri->answer), or the Python path's (or an error) */
    if (ri->app->base == NULL)
        return self->server_name != NULL && self->server_port != NULL ? http_block(self, &h, ri) : NULL;
    return http_environ(self, &h, ri, ri->app->base);
}

int lane_env_http_init(void) {
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        tchar[c] = alnum || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        urlchar[c] = alnum || (c != 0 && strchr("-._~!$&'()*+,;=:@/?%", c) != NULL);
        valuechar[c] = c == '\t' || (c >= 0x20 && c < 0x7f);
        hostchar[c] = alnum || (c != 0 && strchr("-._~!$&'()*+,;=%:", c) != NULL);
    }
    s_http11 = PyUnicode_InternFromString("HTTP/1.1");
    s_http10 = PyUnicode_InternFromString("HTTP/1.0");
    s_get = PyUnicode_InternFromString("GET");
    s_remote_addr = PyUnicode_InternFromString("REMOTE_ADDR");
    s_remote_port = PyUnicode_InternFromString("REMOTE_PORT");
    s_server_protocol = PyUnicode_InternFromString("SERVER_PROTOCOL");
    s_request_method = PyUnicode_InternFromString("REQUEST_METHOD");
    s_request_uri = PyUnicode_InternFromString("REQUEST_URI");
    s_query_string = PyUnicode_InternFromString("QUERY_STRING");
    s_path_info = PyUnicode_InternFromString("PATH_INFO");
    s_empty = PyUnicode_InternFromString("");
    return s_http11 && s_http10 && s_get &&
           s_remote_addr && s_remote_port && s_server_protocol && s_request_method && s_request_uri &&
           s_query_string && s_path_info && s_empty ? 0 : -1;
}
