/* asgi_scope of _uwsgi_native (native.h): the ASGI HTTP scope of a request straight from its
 * uwsgi vars block (what the native lane hands an ASGI app: plugins/cffi/cffi_plugin/asgi_lane.py),
 * in one pass, as cffi_plugin.asgi_http.scope_from_vars builds it from a vars dict. Every length
 * from the block is bounded by core/packet.c (uwsgi_parse_vars) before it is used. Returns None
 * (no error set) for the shapes the Python builder words: a body or an upgrade (the request is not
 * the lane's then), HTTPS / UWSGI_SCHEME, a path that is not ASCII, an odd protocol or port. */
#include "common.h"

static PyObject *k_type, *k_asgi, *k_http_version, *k_method, *k_scheme, *k_path, *k_raw_path,
    *k_query_string, *k_root_path, *k_headers, *k_client, *k_server, *k_state;
static PyObject *s_http, *s_v11, *s_v10, *s_get, *s_head, *s_post, *s_localhost, *b_empty,
    *b_content_type, *b_content_length;

/* header names by the var's position in the last block (behind one client they repeat) */
enum { HNAME_SLOTS = 64, HNAME_MAX = 64 };
static struct {
    PyObject *name;         /* b"x-y" for HTTP_X_Y */
    size_t len;
    char raw[HNAME_MAX];
} names[HNAME_SLOTS];

static PyObject *header_name(int i, const char *k, size_t n) {
    /* a new reference to the ASGI name of var k[0..n) (HTTP_ prefix included) */
    if (i < HNAME_SLOTS && names[i].name != NULL && names[i].len == n && memcmp(names[i].raw, k, n) == 0) {
        Py_INCREF(names[i].name);
        return names[i].name;
    }
    PyObject *name = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n - 5));
    if (name == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(name);
    for (size_t j = 5; j < n; j++) {
        char c = k[j];
        o[j - 5] = c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    if (i < HNAME_SLOTS && n <= HNAME_MAX) {
        Py_INCREF(name);
        Py_XSETREF(names[i].name, name);
        names[i].len = n;
        memcpy(names[i].raw, k, n);
    }
    return name;
}

/* digits only, at most 5 of them: the value, else -1 */
static long port_number(const char *p, size_t n) {
    if (n == 0 || n > 5)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int is_ascii(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return 0;
    return 1;
}

static PyObject *ascii_str(const char *a, size_t an, const char *b, size_t bn) {
    PyObject *s = PyUnicode_New((Py_ssize_t)(an + bn), 127);
    if (s == NULL)
        return NULL;
    char *o = (char *)PyUnicode_DATA(s);
    memcpy(o, a, an);
    memcpy(o + an, b, bn);
    return s;
}

struct var { const char *p; size_t n; int set; };   /* p is "" while not set */

#define VAR_IS(lit) bytes_is(k, (Py_ssize_t)kn, lit, (Py_ssize_t)(sizeof(lit) - 1))

PyObject *uwsgi_native_asgi_scope(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "asgi_scope(block: bytes, state: dict, asgi) takes 3 arguments");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    size_t len = (size_t)PyBytes_GET_SIZE(args[0]);
    size_t cap = len / 5 + 1;   /* each var takes 5 bytes at least (parse_vars' bound) */
    uint32_t stack[4 * 128], *offs = stack;
    if (cap > 128) {
        offs = PyMem_Malloc(4 * cap * sizeof(uint32_t));
        if (offs == NULL)
            return PyErr_NoMemory();
    }
    PyObject *scope = NULL, *headers = NULL;
    int n = uwsgi_parse_vars(buf, len, (int)(cap > INT_MAX ? INT_MAX : cap), offs);
    if (n < 0)
        goto decline;
    struct var method = {"", 0, 0}, uri = {"", 0, 0}, query = {"", 0, 0}, path = {"", 0, 0}, script = {"", 0, 0},
               proto = {"", 0, 0}, sname = {"", 0, 0}, sport = {"", 0, 0}, raddr = {"", 0, 0}, rport = {"", 0, 0};
    headers = PyList_New(0);
    if (headers == NULL)
        goto fail;
    for (int i = 0; i < n; i++) {
        const uint32_t *o = offs + 4 * i;
        const char *k = buf + o[0], *v = buf + o[2];
        size_t kn = o[1], vn = o[3];
        PyObject *name = NULL;
        if (kn > 5 && memcmp(k, "HTTP_", 5) == 0) {
            if (VAR_IS("HTTP_UPGRADE") || VAR_IS("HTTP_TRANSFER_ENCODING"))
                goto decline;
            name = header_name(i, k, kn);
        } else if (VAR_IS("CONTENT_LENGTH")) {
            if (!(vn == 0 || (vn == 1 && v[0] == '0')))
                goto decline;       /* a body: the Python path streams it */
            name = b_content_length;
            Py_INCREF(name);
        } else if (VAR_IS("CONTENT_TYPE")) {
            name = b_content_type;
            Py_INCREF(name);
        } else {
            struct var *slot = VAR_IS("REQUEST_METHOD") ? &method : VAR_IS("REQUEST_URI") ? &uri
                             : VAR_IS("QUERY_STRING") ? &query : VAR_IS("PATH_INFO") ? &path
                             : VAR_IS("SCRIPT_NAME") ? &script : VAR_IS("SERVER_PROTOCOL") ? &proto
                             : VAR_IS("SERVER_NAME") ? &sname : VAR_IS("SERVER_PORT") ? &sport
                             : VAR_IS("REMOTE_ADDR") ? &raddr : VAR_IS("REMOTE_PORT") ? &rport : NULL;
            if (slot != NULL) {     /* the last one wins, as in a dict */
                slot->p = v;
                slot->n = vn;
                slot->set = 1;
            } else if (VAR_IS("HTTPS") || VAR_IS("UWSGI_SCHEME")) {
                goto decline;       /* the scheme by uWSGI's rules: the Python builder */
            }
            continue;
        }
        if (name == NULL)
            goto fail;
        PyObject *value = PyBytes_FromStringAndSize(v, (Py_ssize_t)vn);
        PyObject *pair = value != NULL ? PyTuple_Pack(2, name, value) : NULL;
        Py_DECREF(name);
        Py_XDECREF(value);
        if (pair == NULL || PyList_Append(headers, pair) < 0) {
            Py_XDECREF(pair);
            goto fail;
        }
        Py_DECREF(pair);
    }

    PyObject *version;
    if (!proto.set || bytes_is(proto.p, (Py_ssize_t)proto.n, "HTTP/1.1", 8))
        version = s_v11;
    else if (bytes_is(proto.p, (Py_ssize_t)proto.n, "HTTP/1.0", 8))
        version = s_v10;
    else
        goto decline;
    /* root_path: SCRIPT_NAME without its trailing slashes; path: root_path + PATH_INFO */
    while (script.n > 0 && script.p[script.n - 1] == '/')
        script.n--;
    if (!is_ascii(script.p, script.n) || !is_ascii(path.p, path.n))
        goto decline;
    long server_port = 80;
    if (sport.set && sport.n > 0 && (server_port = port_number(sport.p, sport.n)) < 0)
        goto decline;
    long client_port = 0;
    if (raddr.set && rport.set && rport.n > 0 && (client_port = port_number(rport.p, rport.n)) < 0)
        goto decline;

    scope = PyDict_New();
    if (scope == NULL)
        goto fail;
    PyObject *m = !method.set || bytes_is(method.p, (Py_ssize_t)method.n, "GET", 3) ? (Py_INCREF(s_get), s_get)
                : bytes_is(method.p, (Py_ssize_t)method.n, "HEAD", 4) ? (Py_INCREF(s_head), s_head)
                : bytes_is(method.p, (Py_ssize_t)method.n, "POST", 4) ? (Py_INCREF(s_post), s_post)
                : PyUnicode_DecodeLatin1(method.p, (Py_ssize_t)method.n, NULL);
    const char *q = uri.set ? memchr(uri.p, '?', uri.n) : NULL;
    PyObject *items[][2] = {
        {k_path, ascii_str(script.p, script.n, path.p, path.n)},
        {k_raw_path, PyBytes_FromStringAndSize(uri.p, (Py_ssize_t)(q != NULL ? (size_t)(q - uri.p) : uri.n))},
        {k_query_string, query.set ? PyBytes_FromStringAndSize(query.p, (Py_ssize_t)query.n)
                                   : (Py_INCREF(b_empty), b_empty)},
        {k_root_path, ascii_str(script.p, script.n, "", 0)},
        {k_client, raddr.set ? Py_BuildValue("(Nl)", PyUnicode_DecodeLatin1(raddr.p, (Py_ssize_t)raddr.n, NULL),
                                             client_port)
                             : (Py_INCREF(Py_None), Py_None)},
        {k_server, Py_BuildValue("(Nl)", sname.set ? PyUnicode_DecodeLatin1(sname.p, (Py_ssize_t)sname.n, NULL)
                                                   : (Py_INCREF(s_localhost), s_localhost),
                                 server_port)},
        {k_state, PyDict_Copy(args[1])},
        {k_method, m},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        if (items[i][1] == NULL || PyDict_SetItem(scope, items[i][0], items[i][1]) < 0)
            bad = 1;
        Py_XDECREF(items[i][1]);
    }
    if (bad || PyDict_SetItem(scope, k_type, s_http) < 0 || PyDict_SetItem(scope, k_asgi, args[2]) < 0 ||
        PyDict_SetItem(scope, k_http_version, version) < 0 || PyDict_SetItem(scope, k_scheme, s_http) < 0 ||
        PyDict_SetItem(scope, k_headers, headers) < 0)
        goto fail;
    Py_DECREF(headers);
    if (offs != stack)
        PyMem_Free(offs);
    return scope;
decline:
    Py_XDECREF(headers);
    Py_XDECREF(scope);
    if (offs != stack)
        PyMem_Free(offs);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(headers);
    Py_XDECREF(scope);
    if (offs != stack)
        PyMem_Free(offs);
    return NULL;
}

int uwsgi_native_asgi_init(void) {
    struct { PyObject **obj; const char *s; } strs[] = {
        {&k_type, "type"}, {&k_asgi, "asgi"}, {&k_http_version, "http_version"}, {&k_method, "method"},
        {&k_scheme, "scheme"}, {&k_path, "path"}, {&k_raw_path, "raw_path"}, {&k_query_string, "query_string"},
        {&k_root_path, "root_path"}, {&k_headers, "headers"}, {&k_client, "client"}, {&k_server, "server"},
        {&k_state, "state"}, {&s_http, "http"}, {&s_v11, "1.1"}, {&s_v10, "1.0"}, {&s_get, "GET"},
        {&s_head, "HEAD"}, {&s_post, "POST"}, {&s_localhost, "localhost"},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        *strs[i].obj = PyUnicode_InternFromString(strs[i].s);
        if (*strs[i].obj == NULL)
            return -1;
    }
    b_empty = PyBytes_FromStringAndSize("", 0);
    b_content_type = PyBytes_FromString("content-type");
    b_content_length = PyBytes_FromString("content-length");
    return b_empty != NULL && b_content_type != NULL && b_content_length != NULL ? 0 : -1;
}
