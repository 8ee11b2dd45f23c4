"""What the figures were measured on: CPU, cores, memory, kernel, tool versions, load, git commit."""

from __future__ import annotations

import os
import platform
import subprocess

from .servers import OURS, PEER_UWSGI, ROOT, VENV_BIN


def _out(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if (r.stdout or r.stderr) else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def describe() -> dict:
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
        "git_commit": _out(["git", "rev-parse", "--short", "HEAD"]),
        "versions": {
            "ours": _out([str(OURS), "--version"]) if OURS.exists() else "not built",
            "uwsgi": _out([str(PEER_UWSGI), "--version"]) if PEER_UWSGI.exists() else "missing",
            "gunicorn": _out([str(VENV_BIN / "gunicorn"), "--version"]),
            "nginx": _out(["nginx", "-v"]),
            "wrk": _out(["wrk", "-v"]),
            "locust": _out([str(VENV_BIN / "locust"), "--version"]),
        },
    }
