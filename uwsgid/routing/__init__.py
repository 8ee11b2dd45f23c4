"""uWSGI's internal routing: --route*, --error-route*, --response-route*, --final-route*.

One concern per module:
    translate      a route argument for one request: $1.. and ${VAR} / ${name[key]} route vars
    conditions     --route-if / --route-if-not conditions (equal, regexp, ipv4in, isfile...)
    chains         the options -> four compiled chains; running one (goto, labels)
    actions_core   core/routing.c's actions (break, return, log, addvar, addheader, setmodifier1...)
    actions_http   rewrite, redirect, basicauth (htpasswd.py), static/file/sendfile/fastfile
    actions_cache  cache, cachestore, cachevar, cacheset, cacheinc...; the incache condition
    actions_code   python:, lua:, hook:, hooks: (code in every phase) and ${hook[NAME]}
    runtime        the State of a request and the Router the core calls
    lane           the request and final chains on the native lane (core/cpython/lane_route.c)
    collect        --collect-header / --pull-header (response headers into request vars)
    doc            docs/ROUTING.md, generated from the declarations

A new action (e.g. code of a language plugin) is one more `chains.action(...)` factory.

How the server reaches it (this package sits above the services, whose caches and signals
its actions use, and hands itself down): at master_start the chains are compiled from the
options in the order given (a bad route: one line naming the option, exit 1) and, when any
route is configured, the Router is handed to the core (`uwsgid.server.core.use_router`):
without routes the request path pays one attribute test.
"""

from __future__ import annotations

from uwsgid.config.options import Option, declare
from uwsgid.routing import chains, collect
from uwsgid.util import hooks
from uwsgid.util.log import log

_HELP = {
    "": "add a route matching PATH_INFO: 'REGEXP ACTION:ARGS'",
    "host": "add a route matching the Host header: 'REGEXP ACTION:ARGS'",
    "uri": "add a route matching REQUEST_URI",
    "qs": "add a route matching QUERY_STRING",
    "remote-addr": "add a route matching REMOTE_ADDR",
    "user-agent": "add a route matching the User-Agent header",
    "remote-user": "add a route matching REMOTE_USER",
    "referer": "add a route matching the Referer header",
    "label": "add a routing label (for use with goto)",
    "if": "add a route based on a condition: 'COND:ARGS ACTION:ARGS'",
    "if-not": "add a route based on a condition (negate version)",
    "run": "always run the specified route action: 'ACTION:ARGS'",
    "status": "add a route for the specified response status: 'STATUS ACTION:ARGS'",
}
_FAMILY = {"route": "", "final-route": " (final chain: after the response is out)",
           "error-route": " (error chain: when the app answers status >= 400)",
           "response-route": " (response chain: when the app has set status and headers)"}

ROUTE_OPTIONS = chains.option_names()

declare(*[
    Option(name, kind="str", multi=True, group="routing", metavar="ROUTE",
           help=_HELP[chains.split_option(name)[1]] + _FAMILY[chains.split_option(name)[0]])
    for name in ROUTE_OPTIONS
], Option("routers-list", kind="flag", group="routing", aliases=("router-list",),
          help="list the enabled route actions (and conditions) at start-up"))

router = None     # this process's Router, None without routes


def entries(opts) -> list[tuple[str, str]]:
    """The route options in the order they were given (the chains keep it)."""
    names = set(ROUTE_OPTIONS)
    out = []
    for key, value in getattr(opts, "exported", None) or ():
        k = key.strip().replace("_", "-")
        if k in names and value is not None:
            out.append((k, value))
    return out


def setup(opts):
    """The Router for these options, or None when no route (nor --collect-header/--pull-header)
    is configured. Raises chains.RouteError (one line) on a bad route or header option."""
    from uwsgid.routing import actions_code
    items = actions_code.implicit_routes(opts) + entries(opts)    # --python-hooks / --lua-hooks
    try:
        collector = collect.from_options(opts)
    except collect.CollectError as e:
        raise chains.RouteError(str(e)) from None
    if not items and collector is None:
        return None
    load_actions()
    compiled = chains.compile_chains(items)
    from uwsgid.routing import actions_http, lane, translate
    from uwsgid.routing.runtime import Router
    translate.use_mime_table(_mime_table(opts))
    actions_http.use_static_safe(opts.get("static-safe", None) or ())
    rt = Router(compiled, collector)
    rt.lane_plan = lane.plan(rt)      # checked once, here: the lanes of every loop share it
    return rt


def load_actions() -> None:
    """Register the actions (chains.ACTIONS): imported only when routes are configured or
    listed, so that an instance without routes carries none of their modules."""
    from uwsgid.routing import actions_cache, actions_code, actions_core, actions_http  # noqa: F401  (register)


def _mime_table(opts):
    from uwsgid.static import mime
    table: dict = {}
    for path in opts.get("mime-file", None) or [mime.DEFAULT_FILE]:
        try:
            with open(path, "rb") as f:
                mime.parse(f.read(), table)
        except OSError:
            pass
    return mime.MimeTable(table or dict(mime.BUILTIN))


def _master_start(server) -> None:
    global router
    opts = server.opts
    if opts.get("routers-list", False):
        for line in routers_list():
            log(line)
    try:
        router = setup(opts)
    except chains.RouteError as e:
        log(f"uwsgi: {e}")
        raise SystemExit(1) from None
    if router is not None:
        from uwsgid.server import core
        core.use_router(router)
        from uwsgid.observe import reqlog
        from uwsgid.routing import actions_code
        reqlog.provide("hook", actions_code.log_value, with_request=True)     # %(hook.NAME)
        n = sum(len(c.routes) for c in (router.request_chain, router.error, router.response, router.final) if c)
        log(f"internal routing: {n} routes compiled")
        c = router.collect
        for name, var in (c.collect if c else ()):
            log(f"collecting header {name.decode('latin-1')} to var {var.decode('latin-1')}")
        for name, var in (c.pull if c else ()):
            log(f"pulling header {name.decode('latin-1')} to var {var.decode('latin-1')}")


def routers_list() -> list[str]:
    from uwsgid.routing import conditions
    load_actions()
    return ["", "*** uWSGI loaded routers ***", *sorted(chains.ACTIONS), "--- end of routers list ---",
            "", "*** route conditions ***", *sorted(conditions.CONDITIONS), "--- end of route conditions ---", ""]


hooks.register("master_start", _master_start)
