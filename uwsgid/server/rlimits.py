"""Process limits set at start-up, where uWSGI sets them (core/uwsgi.c, before the sockets are
bound and the privileges dropped, so that the master may still raise a hard limit):

- `--max-fd N`: RLIMIT_NOFILE, soft and hard, to N (above the hard limit needs root).
- `--limit-as MB`: RLIMIT_AS, soft and hard, to MB megabytes: the address space of the master
  and of every process it forks (an allocation past it fails: MemoryError in Python).

A limit the kernel refuses is logged with its reason and the start goes on, as in uWSGI; the
limits in force are logged either way, in uWSGI's words.
"""

from __future__ import annotations

import resource

from uwsgid.config.options import Option, declare

declare(
    Option("max-fd", kind="int", default=0, metavar="N",
           help="set the open files limit (RLIMIT_NOFILE, soft and hard) to N at start-up (raising "
                "the hard limit needs root)"),
    Option("limit-as", kind="int", default=0, metavar="MB",
           help="limit the address space (RLIMIT_AS) of the master and every process it forks to MB "
                "megabytes"),
)


def apply(opts, log) -> None:
    """Set --max-fd and --limit-as (in the master, or the single process, before binding)."""
    limit_as = int(opts.limit_as or 0)
    if limit_as > 0:
        log("limiting address space of processes...")
        _set(resource.RLIMIT_AS, limit_as * 1024 * 1024, "--limit-as", log)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        log(f"your process address space limit is {hard} bytes ({hard // 1048576} MB)")
    max_fd = int(opts.max_fd or 0)
    if max_fd > 0:
        _set(resource.RLIMIT_NOFILE, max_fd, "--max-fd", log)
    if max_fd or limit_as:
        log(f"detected max file descriptor number: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")


def _set(which: int, value: int, option: str, log) -> None:
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError) as e:
        log(f"{option} {value}: setrlimit(): {getattr(e, 'strerror', None) or e} (the limit stays "
            f"{resource.getrlimit(which)[0]})")
