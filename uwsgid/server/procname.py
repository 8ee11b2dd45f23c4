"""Process names (what ps shows), as uWSGI's uwsgi_set_processname / uwsgi_fork:

    master:         --procname-master, else --procname, else "uWSGI master"
    other process:  --procname, else its own name ("uWSGI worker 3", "uWSGI http 1", ...)

each with --procname-prefix (or --procname-prefix-spaced: the prefix and a space; the one
given last wins) before it and --procname-append after it. Any of these options turns
naming on (uWSGI's UWSGI_OPT_PROCNAME), as --auto-procname does. Only the ./uwsgi executable
can rename its process (uwsgid.util.binary); under plain Python the names stay.
"""

from __future__ import annotations

from uwsgid.config.options import Option, declare
from uwsgid.util.binary import set_proctitle

declare(
    Option("procname", kind="str", help="set the names of all the processes (the master's: see --procname-master)"),
    Option("procname-append", kind="str", help="append a string to the process names"),
    Option("procname-prefix-spaced", kind="str", help="add a prefix and a space to the process names"),
)

_NAMING = ("auto_procname", "procname", "procname_master", "procname_prefix", "procname_prefix_spaced",
           "procname_append")


def enabled(opts) -> bool:
    return any(opts.get(name) for name in _NAMING)


def _prefix(opts) -> str:
    prefix = ""
    for key, value in opts.exported:
        key = key.replace("_", "-")
        if key == "procname-prefix":
            prefix = value or ""
        elif key == "procname-prefix-spaced":
            prefix = f"{value or ''} "
    if not prefix:      # set without going through a config item (tests build Options by hand)
        prefix = opts.procname_prefix or (f"{opts.procname_prefix_spaced} " if opts.procname_prefix_spaced else "")
    return prefix


def title(opts, name: str) -> str:
    return f"{_prefix(opts)}{name}{opts.procname_append or ''}"


def name_master(opts) -> None:
    if enabled(opts):
        set_proctitle(title(opts, opts.procname_master or opts.procname or "uWSGI master"))


def name_process(opts, name: str) -> None:
    """A process the master forked (worker, router, mule, spooler...): `name` is its own name."""
    if enabled(opts):
        set_proctitle(title(opts, opts.procname or name))
