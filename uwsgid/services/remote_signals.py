"""uWSGI's remote signals, between nodes over the uwsgi protocol (modifier1 110): send_remote
raises a signal on another instance (`uwsgi.signal(num, "host:port")`, or real uWSGI's
`uwsgi --signal ADDR,NUM`), RemoteSignalPlugin raises here those sent to this one.

Wire format: the request is a bare uwsgi header (modifier1 110, pktsize 0, modifier2 = the
signal); the answer is a header (modifier1 255, pktsize 0, modifier2 1 = delivered / 0 =
rejected: not registered here).
"""

from __future__ import annotations

import struct

from uwsgid.plugins.contract import Plugin
from uwsgid.services import signals, wire
from uwsgid.util.log import log

MODIFIER1 = 110


def send_remote(addr: str, num: int) -> None:
    """Raise signal num on node addr; OSError when it cannot be delivered, ValueError when the
    node rejects it."""
    signals.check_num(num)
    try:
        with wire.connect(addr, wire.timeout()) as s:
            s.sendall(struct.pack("<BHB", MODIFIER1, 0, num))
            head = wire.recv_exact(s, 4)
    except OSError as exc:
        raise OSError(f"unable to deliver signal {num} to node {addr}: {exc}") from None
    if len(head) < 4:
        raise OSError(f"unable to deliver signal {num} to node {addr}: no answer")
    if head[3] != 1:
        raise ValueError(f"node {addr} rejected signal {num}")


class RemoteSignalPlugin(Plugin):
    """modifier1 110: a signal sent by another node, raised here when it is registered."""

    name = "signal"
    modifier1 = MODIFIER1

    def has_app(self) -> bool:
        return True

    def request(self, req):
        num = req.modifier2
        ok = signals.registered(num)
        if ok:
            signals.raise_signal(num)
        else:
            log(f"[uwsgi-signal] remote signal {num} rejected: not registered")
        wire.write_raw(req, struct.pack("<BHB", 255, 0, 1 if ok else 0))
        return None


remote_plugin = RemoteSignalPlugin()
