"""What the soak reads about a running server: the stats server's JSON (worker pids), each
process's RSS and open file descriptors from /proc, and the client ports of the TCP connections
a process holds (to tell which failed requests were on a worker that was killed)."""

from __future__ import annotations

import json
import os
import socket


def read_stats(port: int, timeout: float = 3.0) -> dict | None:
    """The stats server's document (uWSGI's format, ours too), or None when it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        return json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return None


def worker_pids(stats: dict | None) -> dict[int, int]:
    """worker id -> pid, for the workers the stats list with a live pid."""
    if not stats:
        return {}
    return {int(w["id"]): int(w["pid"]) for w in stats.get("workers", []) if int(w.get("pid") or 0) > 0}


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def footprint(master: int, workers: dict[int, int]) -> dict:
    """RSS (KiB) and open fds of the master and of each worker, by worker id."""
    procs = {"master": master, **{f"worker {wid}": pid for wid, pid in sorted(workers.items())}}
    out = {}
    for name, pid in procs.items():
        out[name] = {"pid": pid, "rss_kb": rss_kb(pid), "fds": fd_count(pid)}
    return out


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def held_client_ports(pid: int, server_ports: set[int]) -> set[int]:
    """Remote (client) ports of the TCP connections `pid` holds on any of `server_ports`."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10 or int(parts[9]) not in inodes:
                        continue
                    local_port = int(parts[1].rsplit(":", 1)[1], 16)
                    remote_port = int(parts[2].rsplit(":", 1)[1], 16)
                    if local_port in server_ports and remote_port:
                        ports.add(remote_port)
        except OSError:
            pass
    return ports
