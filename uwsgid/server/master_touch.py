"""The master's own touch files, in uWSGI's order (the rules of a touch: uwsgid.util.touch):

    --touch-reload FILE          graceful reload of the instance
    --touch-workers-reload FILE  the workers only (the master fifo's `w`)
    --touch-chain-reload FILE    a chain reload (the master fifo's `c`)

The first two end that tick's check, as in uWSGI. The services check theirs on the same tick:
--touch-mules-reload, --touch-exec, --touch-signal (uwsgid.services.touch_actions),
--touch-spoolers-reload, a daemon's touch=; and --touch-logrotate / --touch-logreopen (the
loggers), --hook-touch (uwsgid.server.user_hooks).
"""

from __future__ import annotations

from uwsgid.server.master_actions import reload_workers
from uwsgid.util.log import log
from uwsgid.util.touch import TouchFiles


class MasterTouches:
    def __init__(self, master):
        opts = master.opts
        self.master = master
        self.reload = TouchFiles(opts.get("touch-reload") or (), log)
        self.workers = TouchFiles(opts.get("touch-workers-reload") or (), log)
        self.chain = TouchFiles(opts.get("touch-chain-reload") or (), log)

    def check(self) -> None:
        master = self.master
        touched = self.reload.changed()
        if touched:
            master.reload(f"*** {touched} has been touched... grace them all !!! ***")
            return
        touched = self.workers.changed()
        if touched:
            log(f"*** {touched} has been touched... workers reload !!! ***")
            reload_workers(master)
            return
        touched = self.chain.changed()
        if touched:
            if master.lifetime.chain:
                log(f"*** {touched} has been touched... but chain reload is already running ***")
            else:
                log(f"*** {touched} has been touched... chain reload !!! ***")
                master.lifetime.chain_reload()
