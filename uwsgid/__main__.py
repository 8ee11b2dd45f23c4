"""`python -m uwsgid ARGS` runs the server like ./uwsgi ARGS."""

import sys

from uwsgid import main as _main
from uwsgid.server import reexec


def run() -> int:
    # A graceful reload re-execs the master the same way it was started.
    reexec.launcher = [sys.executable, "-m", "uwsgid"]
    return _main.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(run())
