"""A small shop for the locust scenario: pages, an item page, a form POST, and a sidebar fragment
kept in the uWSGI cache (`--cache2 name=bench,items=100`); same code under ours, real uWSGI and
gunicorn. Without a uwsgi cache API (gunicorn) the fragment is cached in a per-process dict,
and the X-Cache-Backend header says which one served it.
"""

import html
from urllib.parse import parse_qs

try:
    import uwsgi  # only inside a uWSGI-compatible server
    CACHE = "uwsgi" if hasattr(uwsgi, "cache_get") else "dict"
except ImportError:
    uwsgi = None
    CACHE = "dict"

CACHE_NAME = "bench"
ITEMS = [(i, f"Item {i}", 100 + 7 * i % 90) for i in range(1, 51)]
_local_cache: dict = {}


def _page(title, body):
    return (f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>").encode()


def _sidebar():
    """The 'expensive' fragment: built once, then served from the cache."""
    if CACHE == "uwsgi":
        cached = uwsgi.cache_get("sidebar", CACHE_NAME)
        if cached:
            return cached
    elif "sidebar" in _local_cache:
        return _local_cache["sidebar"]
    rows = "".join(f"<li><a href='/item/{i}'>{html.escape(name)}</a> {price / 10:.2f}</li>"
                   for i, name, price in sorted(ITEMS, key=lambda t: -t[2])[:20])
    frag = f"<aside><h2>Best sellers</h2><ul>{rows}</ul></aside>".encode()
    if CACHE == "uwsgi":
        uwsgi.cache_set("sidebar", frag, 60, CACHE_NAME)
    else:
        _local_cache["sidebar"] = frag
    return frag


def _read_form(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    method = environ.get("REQUEST_METHOD", "GET")
    status, body = "200 OK", None
    if path == "/":
        rows = "".join(f"<li><a href='/item/{i}'>{html.escape(n)}</a></li>" for i, n, _ in ITEMS)
        body = _page("Shop", f"<ul>{rows}</ul><a href='/order'>order</a>")
    elif path.startswith("/item/"):
        try:
            i = int(path[6:])
            _, name, price = ITEMS[i - 1]
            body = _page(name, f"<p>price {price / 10:.2f}</p><form method='post' action='/order'>"
                               f"<input name='item' value='{i}'><input name='qty'></form>")
        except (ValueError, IndexError):
            status, body = "404 Not Found", _page("Not found", "")
    elif path == "/fragment/sidebar":
        body = _sidebar()
    elif path == "/order" and method == "GET":
        body = _page("Order", "<form method='post'><input name='item'><input name='qty'>"
                              "<input name='email'><button>buy</button></form>")
    elif path == "/order" and method == "POST":
        form = _read_form(environ)
        try:
            item, qty = int(form.get("item", "")), int(form.get("qty", ""))
            if not (1 <= item <= len(ITEMS) and 1 <= qty <= 99) or "@" not in form.get("email", ""):
                raise ValueError
            body = _page("Thanks", f"<p>order item={item} qty={qty} for {html.escape(form['email'])}</p>")
        except ValueError:
            status, body = "400 Bad Request", _page("Bad order", "<p>item, qty and email please</p>")
    else:
        status, body = "404 Not Found", _page("Not found", "")
    start_response(status, [("Content-Type", "text/html; charset=utf-8"),
                            ("Content-Length", str(len(body))), ("X-Cache-Backend", CACHE)])
    return [body]
