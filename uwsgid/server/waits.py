"""What the start waits for (uWSGI's --wait-for-* options, core/utils.c), polled once a second:

    --wait-for-interface IFACE       a network interface exists      (root only, before as-root hooks)
    --wait-for-fs/-file/-dir PATH    PATH exists (any kind: uWSGI's three options fill one list)
    --wait-for-mountpoint DIR        DIR is a mount point (its device differs from its parent's)
    --wait-for-socket ADDR           something accepts on ADDR       (every start, before the apps)

Each gives up after its timeout (--wait-for-*-timeout, 60 s by default), and the start stops
(exit 1). uWSGI waits for interfaces and paths only when started as root (they come with the
as-root hooks); here a non-root start says so in the log instead of waiting.
The hook actions wait_for_fs/_file/_dir/_socket (uwsgid.server.hook_actions) use these too.
"""

from __future__ import annotations

import os
import stat
import time

from uwsgid.config.options import Option, declare
from uwsgid.util.log import log

declare(
    Option("wait-for-interface", kind="str", multi=True, aliases=("wait-interface", "wait-for-iface", "wait-iface"),
           metavar="IFACE", help="wait for the network interface before running the as-root hooks (root only)"),
    Option("wait-for-interface-timeout", kind="int", default=60, metavar="SECS",
           aliases=("wait-interface-timeout", "wait-for-iface-timeout", "wait-iface-timeout"),
           help="how long --wait-for-interface waits"),
    Option("wait-for-fs", kind="str", multi=True, aliases=("wait-for-file", "wait-for-dir"), metavar="PATH",
           help="wait for PATH to exist before running the as-root hooks (root only)"),
    Option("wait-for-mountpoint", kind="str", multi=True, metavar="DIR",
           help="wait for DIR to be a mount point before running the as-root hooks (root only)"),
    Option("wait-for-fs-timeout", kind="int", default=60, metavar="SECS",
           help="how long --wait-for-fs/-file/-dir/-mountpoint wait"),
    Option("wait-for-socket", kind="str", multi=True, metavar="ADDR",
           help="wait for something to accept on ADDR (host:port or a unix path) before loading the apps"),
    Option("wait-for-socket-timeout", kind="int", default=60, metavar="SECS", help="how long --wait-for-socket waits"),
)


class WaitTimeout(Exception):
    pass


def _poll(what: str, timeout: int, ready, found: str) -> None:
    log(f"waiting for {what} (max {timeout} seconds) ...")
    for _ in range(max(0, timeout) + 1):
        if ready():
            log(found)
            return
        time.sleep(1)
    raise WaitTimeout(f"{what} unavailable after {timeout} seconds")


def path(p: str, timeout: int, kind: str = "any") -> None:
    def ready():
        try:
            mode = os.stat(p).st_mode
        except OSError:
            return False
        return kind == "any" or (kind == "file" and stat.S_ISREG(mode)) or (kind == "dir" and stat.S_ISDIR(mode))
    _poll(p, timeout, ready, f"{p} found")


def mountpoint(p: str, timeout: int) -> None:
    def ready():
        try:
            st0, st1 = os.stat(p), os.stat(os.path.join(p, ".."))
        except OSError:
            return False
        return stat.S_ISDIR(st0.st_mode) and st0.st_dev != st1.st_dev
    _poll(p, timeout, ready, f"{p} mounted")


def socket_ready(addr: str, timeout: int) -> None:
    import socket

    def ready():
        try:
            if "/" in addr or addr.startswith("@"):
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(1)
                    s.connect("\0" + addr[1:] if addr.startswith("@") else addr)
            else:
                host, _, port = addr.rpartition(":")
                socket.create_connection((host or "127.0.0.1", int(port)), timeout=1).close()
            return True
        except (OSError, ValueError):
            return False
    _poll(addr, timeout, ready, f"{addr} ready")


def interface(name: str, timeout: int) -> None:
    import socket

    def ready():
        try:
            return socket.if_nametoindex(name) > 0
        except OSError:
            return False
    _poll(f"interface {name}", timeout, ready, f"interface {name} found")


def before_root_hooks(opts) -> None:
    """Interfaces, paths, mount points. Raises WaitTimeout."""
    waits = [*(opts.wait_for_interface or ()), *(opts.wait_for_fs or ()), *(opts.wait_for_mountpoint or ())]
    if not waits:
        return
    if os.getuid() != 0:
        log(f"*** WARNING: not waiting for {', '.join(waits)}: uWSGI waits for interfaces and paths only "
            f"when started as root ***")
        return
    for name in opts.wait_for_interface or ():
        interface(name, int(opts.wait_for_interface_timeout or 60))
    for p in opts.wait_for_fs or ():
        path(p, int(opts.wait_for_fs_timeout or 60))
    for p in opts.wait_for_mountpoint or ():
        mountpoint(p, int(opts.wait_for_fs_timeout or 60))


def before_apps(opts) -> None:
    for addr in opts.wait_for_socket or ():
        socket_ready(addr, int(opts.wait_for_socket_timeout or 60))
