"""The stats server (--stats ADDR): uWSGI's stats JSON, served by the master to every client that
connects (`uwsgitop ADDR`, `nc 127.0.0.1 1717`), optionally framed as an HTTP response
(--stats-http) and minified (--stats-minified).

The document is built from the scoreboard (shared memory written by the workers) plus what
the master knows (pids, spawn times) and /proc (rss, vsz). Services add top-level keys
through hooks.run("stats", d) (metrics, cache, locks).
"""

from __future__ import annotations

import os
import socket
import struct
import time

from uwsgid.util import hooks
from uwsgid.util.log import log, log_exception
from uwsgid.util.memory import rss_vsz

_TCP_INFO = getattr(socket, "TCP_INFO", 11)


def listen_queue(sock) -> tuple[int, int]:
    """(connections waiting in the accept queue, backlog size) of a listening TCP socket.
    Linux reports them in tcp_info's unacked/sacked fields for a LISTEN socket."""
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return 0, 0
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
        unacked, sacked = struct.unpack_from("<II", info, 24)
        return unacked, sacked
    except (OSError, struct.error):
        return 0, 0


def _can_offload(lst, offload_threads: int) -> int:
    """uWSGI's can_offload: 1 when --offload-threads can take this socket's responses (here:
    static files' bodies, sent with sendfile, so not over TLS nor on a raw socket)."""
    return int(offload_threads > 0 and lst.proto in ("http", "uwsgi") and getattr(lst, "tls", None) is None)


def _socket_entry(lst, offload_threads: int = 0) -> dict:
    queue, max_queue = listen_queue(lst.sock)
    return {"name": str(getattr(lst, "address", None) or lst.name), "proto": lst.proto,
            "queue": queue, "max_queue": max_queue or int(getattr(lst, "backlog", 0) or 0),
            "shared": 0, "can_offload": _can_offload(lst, offload_threads)}


def _core_entry(core_id: int, c: dict) -> dict:
    d = {"id": core_id, "requests": c["requests"], "static_requests": c["static_requests"],
         "routed_requests": c["routed_requests"], "offloaded_requests": c["offloaded_requests"],
         "write_errors": c["write_errors"], "read_errors": c["read_errors"],
         "in_request": 1 if c["start_us"] else 0, "vars": [], "req_info": {}}
    if c["start_us"]:
        d["req_info"] = {"request_start": c["start_us"] // 1_000_000, "uri": c["uri"].decode("latin-1")}
    return d


def _app_entry(sb, wid: int, slot: int, app: dict) -> dict:
    requests, exceptions = sb.slot_counts(wid, slot)
    return {**app, "requests": requests, "exceptions": exceptions}


def _apps(server, sb) -> list[tuple[int, dict]]:
    """(counters slot, entry) of every app this process loaded, each distinct plugin once."""
    apps = []
    seen = set()
    for p in server.plugins.values():
        if id(p) in seen:
            continue
        seen.add(id(p))
        try:
            apps.extend((sb.app_slot(p, a.get("id", -1)), a) for a in p.stats_apps())
        except Exception:
            log_exception(f"uwsgi: {p.name}.stats_apps() failed:")
    return apps


def publish_apps(server, wid: int) -> None:
    """A worker's own app list into the scoreboard, after its apps loaded: with --lazy-apps
    the master, which builds the stats, never loads them."""
    import marshal  # a worker-side format without json (not imported into workers)
    sb = server.scoreboard
    if sb is None:
        return
    apps = _apps(server, sb)
    try:
        while not sb.set_apps_info(wid, marshal.dumps(apps)) and apps:
            apps.pop()      # more apps than fit: the first ones
    except ValueError:      # an entry marshal cannot carry: the master's list stays in use
        log_exception(f"uwsgi: worker {wid}: cannot publish its apps for the stats:")


def workers(server) -> list[dict]:
    """The `workers` array (also the backend of the `uwsgi.workers()` API)."""
    sb = server.scoreboard
    out = []
    if sb is None:
        return out
    # The apps each worker published (else this process's); the per-worker request and
    # exception counts come from the scoreboard (the plugins' own counters are per process).
    import marshal
    own = None
    for wid in range(1, sb.numproc + 1):
        info = sb.apps_info(wid)
        try:
            apps = marshal.loads(info) if info else None
        except (EOFError, ValueError, TypeError):
            apps = None
        if apps is None:
            apps = own = _apps(server, sb) if own is None else own
        w = sb.worker(wid)
        rss, vsz = rss_vsz(w["pid"])
        if not w["pid"]:
            status = "cheap"
        elif w["busy"]:
            status = "busy"
        elif sb.paused():
            status = "pause"     # uWSGI's: paused by SIGTSTP (--pause), no request in progress
        else:
            status = "idle"
        out.append({
            "id": wid, "pid": w["pid"], "accepting": w["accepting"], "requests": w["requests"],
            "delta_requests": w["delta_requests"], "exceptions": w["exceptions"],
            "harakiri_count": w["harakiri_count"], "signals": w["signals"], "signal_queue": 0,
            "status": status, "rss": rss, "vsz": vsz, "running_time": w["running_time"],
            "last_spawn": int(w["last_spawn"]), "respawn_count": w["respawn_count"], "tx": w["tx"],
            "avg_rt": w["running_time"] // w["requests"] if w["requests"] else 0,
            "apps": [_app_entry(sb, wid, slot, a) for slot, a in apps],
            # ours: connections whose request is still arriving, and those closed over the cap
            "pending_heads": w["pending_heads"], "dropped_pending_heads": w["dropped_pending_heads"],
            "cores": [_core_entry(i, c) for i, c in enumerate(w["cores"])],
        })
    return out


def build(server) -> dict:
    """uWSGI's stats document."""
    try:
        offload = int(server.opts.get("offload-threads", 0) or 0)
    except (AttributeError, TypeError, ValueError):
        offload = 0
    socks = [_socket_entry(lst, offload) for lst in server.listeners]
    ws = workers(server)
    d = {
        "version": server.version,
        "listen_queue": sum(s["queue"] for s in socks),
        "listen_queue_errors": 0,
        "signal_queue": 0,
        "load": sum(s["queue"] for s in socks) + sum(1 for w in ws if w["status"] == "busy"),
        "pid": server.master_pid,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": os.getcwd(),
        "locks": [{"user 0": 0}],
        "sockets": socks,
        "workers": ws,
    }
    try:
        hooks.run("stats", d)
    except Exception:
        log_exception("uwsgi: stats hook failed:")
    return d


def render(server, minified: bool = False) -> bytes:
    import json  # only --stats needs it: not carried into every worker
    d = build(server)
    if minified:
        return json.dumps(d, separators=(",", ":")).encode()
    return json.dumps(d, indent=1).encode()


def _bind(addr: str) -> socket.socket:
    if addr.startswith("@"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("\0" + addr[1:])
    elif "/" in addr or ":" not in addr:
        try:
            os.unlink(addr)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(addr)
    else:
        host, _, port = addr.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except ValueError:
            s.close()
            raise OSError(f"bad stats address {addr!r}") from None
    s.listen(64)
    s.setblocking(False)
    return s


class StatsServer:
    """Accepted in the master's selector; each client gets one document and the connection closes."""

    def __init__(self, server, addr: str):
        self.server = server
        self.addr = addr
        self.http = bool(server.opts.stats_http)
        self.minified = bool(server.opts.stats_minified)
        self.sock = _bind(addr)
        self.path = addr if (not addr.startswith("@") and ("/" in addr or ":" not in addr)) else None

    def render(self, minified: bool | None = None) -> bytes:
        return render(self.server, self.minified if minified is None else minified)

    def on_accept(self) -> None:
        for _ in range(16):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log(f"uwsgi: stats server accept(): {e.strerror or e}")
                return
            try:
                self._serve(conn)
            except OSError:
                pass
            except Exception:
                log_exception("uwsgi: stats server failed:")
            finally:
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.settimeout(2.0)
        body = self.render()
        if self.http:
            self._read_request(conn)
            head = (b"HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
            conn.sendall(head + body)
        else:
            conn.sendall(body)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        """Consume the HTTP request head so closing does not reset the connection (bounded)."""
        conn.settimeout(1.0)
        data = b""
        deadline = time.monotonic() + 1.0
        while b"\r\n\r\n" not in data and len(data) < 65536 and time.monotonic() < deadline:
            try:
                chunk = conn.recv(4096)
            except (socket.timeout, OSError):
                break
            if not chunk:
                break
            data += chunk
        conn.settimeout(2.0)

    def close(self, unlink: bool = True) -> None:
        """unlink=False in forked children: the socket file belongs to the master."""
        try:
            self.sock.close()
        except OSError:
            pass
        if self.path and unlink:
            try:
                os.unlink(self.path)
            except OSError:
                pass
