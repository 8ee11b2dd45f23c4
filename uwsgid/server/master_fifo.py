"""--master-fifo PATH: a named pipe the master reads one-letter commands from, as uWSGI's
core/fifo.c (`echo r > /tmp/master.fifo`).

    0-9  make the Nth --master-fifo the active one (from the next writer on)
    +/-  one worker more / less (with --cheaper)
    c    chain reload: the workers one after the other, each once the previous is accepting
    C    go cheap: kill the workers; they come back with the next connection
    l/L  reopen / rotate the logs
    p    pause / resume            P  rewrite the pidfiles
    q/Q  graceful / brutal stop    r/R  graceful / brutal reload
    s    configuration and counters to the log
    w/W  graceful / brutal reload of the workers only
    B, E, f, S  refused here (Emperor, re-forking the master, subscriptions)

The FIFO is made at the master's start (an old file at the path is replaced) and read in
the master's loop, never blocking it; when its writer closes it is made anew (the kernel
would otherwise report the closed end forever), at the active path. It goes away with
--vacuum, as in uWSGI; a reload (re-exec) makes it again.
"""

from __future__ import annotations

import os

from uwsgid.config.options import Option, declare
from uwsgid.server import master_actions
from uwsgid.util.log import log

declare(
    Option("master-fifo", kind="str", multi=True, needs_master=True, metavar="PATH",
           help="a named pipe for master commands (r q w p s c C + - 0-9 ...; see the Master FIFO docs); "
                "several: 0-9 switch the active one"),
)

# letter -> uWSGI's function name (uwsgid.server.master_actions.ACTIONS)
COMMANDS = {
    "-": "uwsgi_cheaper_decrease",
    "+": "uwsgi_cheaper_increase",
    "c": "uwsgi_chain_reload",
    "C": "uwsgi_go_cheap",
    "l": "uwsgi_log_reopen",
    "L": "uwsgi_log_rotate",
    "p": "suspend_resume_them_all",
    "P": "uwsgi_update_pidfiles",
    "q": "gracefully_kill_them_all",
    "Q": "kill_them_all",
    "r": "grace_them_all",
    "R": "reap_them_all",
    "s": "stats",
    "w": "uwsgi_reload_workers",
    "W": "uwsgi_brutally_reload_workers",
}

REFUSED = {
    "B": "B (ask the Emperor for reinforcements): there is no Emperor here",
    "E": "E (make the Emperor rescan): there is no Emperor here",
    "f": "f (re-fork the master): not supported, use r (graceful reload) or R",
    "S": "S (block subscriptions): this server has no subscription system",
}


class FifoError(OSError):
    pass


class MasterFifo:
    """The master's FIFO(s): `paths` in the order given; the first is active at start."""

    def __init__(self, master, paths: list[str]):
        self.master = master
        self.paths = [os.path.abspath(p) for p in paths]
        self.slot = 0
        self.fd = -1
        self._open()
        # no forked child (worker, mule...) keeps the read end
        os.register_at_fork(after_in_child=self._forget)

    @property
    def path(self) -> str:
        return self.paths[self.slot] if self.slot < len(self.paths) else self.paths[0]

    def _open(self) -> None:
        path = self.path
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise FifoError(f"--master-fifo {path}: cannot replace the existing file: {e.strerror}") from None
        try:
            os.mkfifo(path, 0o600)
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise FifoError(f"--master-fifo {path}: {e.strerror}") from None
        self.master.add_reader(self.fd, self._on_readable)

    def _close_fd(self) -> None:
        if self.fd >= 0:
            self.master.remove_reader(self.fd)
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def _forget(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError as e:
            log(f"uwsgi: master fifo {self.path}: read error: {e.strerror}")
            data = b""
        if not data:
            # the writer closed: a new FIFO (at the active path) for the next one
            self._close_fd()
            try:
                self._open()
            except FifoError as e:
                log(f"uwsgi: {e}: the master fifo is disabled")
            return
        for byte in data:
            self.command(chr(byte))

    def command(self, letter: str) -> None:
        if letter.isspace():
            return        # `echo r > fifo` writes a newline too
        if letter.isdigit():
            self.slot = int(letter)
            log(f"active master fifo is now {self.path}")
            return
        name = COMMANDS.get(letter)
        if name is None:
            why = REFUSED.get(letter)
            log(f"uwsgi: master fifo command {why}" if why else
                f"uwsgi: unknown master fifo command {letter!r} (see uwsgid/server/master_fifo.py for the list)")
            return
        master_actions.ACTIONS[name](self.master)

    def close(self, vacuum: bool) -> None:
        self._close_fd()
        if vacuum:
            for path in dict.fromkeys(self.paths):
                try:
                    os.unlink(path)
                    log(f"VACUUM: master fifo {path} removed.")
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log(f"uwsgi: cannot remove the master fifo {path}: {e.strerror}")
