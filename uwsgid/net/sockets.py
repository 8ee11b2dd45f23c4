"""Listening sockets: parse uWSGI socket addresses, bind them in the master before fork, and hand
them over across a master re-exec (inherited fds described in UWSGI_LISTEN_FDS).

ADDR forms (as uWSGI): `host:port`, `:port` (all IPv4 interfaces), `[::1]:port`,
`/path/to.sock` (unix; a stale file is unlinked), `@name` (Linux abstract unix socket),
`fd://N` (an already-listening inherited descriptor), `=N` (the Nth --shared-socket).
"""

from __future__ import annotations

import os
import socket
import stat

from uwsgid.config.options import value as option_value

ENV_FDS = "UWSGI_LISTEN_FDS"


class BindError(Exception):
    """A socket could not be bound: the message is one line naming the address and the reason."""


class Listener:
    """One listening socket the workers accept on."""

    __slots__ = ("sock", "name", "proto", "modifier1", "modifier2", "path", "internal",
                 "family", "host", "port", "fd", "tls")

    def __init__(self, sock: socket.socket, name: str, proto: str = "uwsgi", modifier1: int = 0,
                 modifier2: int = 0, path: str | None = None, internal: bool = False):
        if proto not in ("uwsgi", "http", "raw"):
            raise ValueError(f"unknown socket protocol {proto!r}")
        self.sock = sock
        self.name = name
        self.proto = proto
        self.modifier1 = modifier1
        self.modifier2 = modifier2
        self.path = path
        self.internal = internal
        self.tls = None           # the ssl.SSLContext of an --https-socket (uwsgid/net/tls.py)
        self.family = sock.family
        self.fd = sock.fileno()
        # SERVER_NAME / SERVER_PORT for requests arriving here.
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            addr = sock.getsockname()
            self.host, self.port = addr[0], addr[1]
        else:
            self.host, self.port = "", 0

    @property
    def address(self) -> str:
        """The bound address as text (with the real port when :0 was asked)."""
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        if self.family == socket.AF_INET:
            return f"{self.host}:{self.port}"
        return self.name

    def describe(self) -> dict:
        return {"fd": self.fd, "name": self.name, "proto": self.proto, "modifier1": self.modifier1,
                "modifier2": self.modifier2, "path": self.path, "internal": self.internal}

    @classmethod
    def from_fd(cls, fd: int, name: str, proto: str = "uwsgi", modifier1: int = 0, modifier2: int = 0,
                path: str | None = None, internal: bool = False) -> "Listener":
        """Adopt an inherited listening descriptor (master re-exec, systemd-like fd passing)."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        return cls(sock, name, proto, modifier1, modifier2, path, internal)

    def close(self, unlink: bool = False) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if unlink and self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<Listener {self.proto} {self.address} fd={self.fd}{' internal' if self.internal else ''}>"


def parse_address(addr: str):
    """ADDR -> (family, sockaddr, unix_path_or_None). Raises BindError for an unusable ADDR."""
    a = addr.strip()
    if not a:
        raise BindError("empty socket address")
    if a.startswith("@"):
        return socket.AF_UNIX, "\0" + a[1:], None
    if a.startswith("/") or a.startswith("./") or (":" not in a and "/" in a) or a.endswith(".sock"):
        return socket.AF_UNIX, a, a
    if a.startswith("["):
        end = a.find("]")
        if end < 0 or a[end + 1:end + 2] != ":":
            raise BindError(f"invalid socket address {addr!r}: expected [IPv6]:port")
        host, port = a[1:end], a[end + 2:]
        family = socket.AF_INET6
    else:
        if ":" not in a:
            raise BindError(f"invalid socket address {addr!r}: expected host:port, :port, /path or @name")
        host, port = a.rsplit(":", 1)
        family = socket.AF_INET
        if not host:
            host = "0.0.0.0"
        elif ":" in host:
            family = socket.AF_INET6
    try:
        portn = int(port)
        if not 0 <= portn <= 65535:
            raise ValueError
    except ValueError:
        raise BindError(f"invalid port in socket address {addr!r}") from None
    if family == socket.AF_INET:
        try:
            socket.inet_aton(host)
        except OSError:
            try:
                host = socket.gethostbyname(host)
            except OSError as e:
                raise BindError(f"cannot resolve {host!r} in socket address {addr!r}: {e.strerror or e}") from None
    return family, (host, portn), None


def _chmod_mode(value) -> int | None:
    if value in (None, False, ""):
        return None
    if value is True:
        return 0o666
    text = str(value)
    try:
        return int(text, 8)
    except ValueError:
        raise BindError(f"invalid --chmod-socket mode {text!r} (octal like 660)") from None


def _owner_ids(spec: str) -> tuple[int, int]:
    """--chown-socket USER[:GROUP] (names or numbers) -> (uid, gid); -1 keeps one unchanged."""
    import grp
    import pwd
    user, _, group = spec.partition(":")
    try:
        uid = int(user) if user.isdigit() else (pwd.getpwnam(user).pw_uid if user else -1)
        gid = int(group) if group.isdigit() else (grp.getgrnam(group).gr_gid if group else -1)
    except KeyError as e:
        raise BindError(f"--chown-socket {spec}: unknown user or group {e.args[0]!r}") from None
    return uid, gid


def bind_address(addr: str, opts=None, proto: str = "uwsgi", modifier1: int = 0, modifier2: int = 0,
                 internal: bool = False) -> Listener:
    """Bind and listen on one ADDR (non-blocking). Raises BindError with a one-line message."""
    backlog = int(option_value(opts, "listen", 100) or 100)
    if addr.startswith("fd://"):
        try:
            fd = int(addr[5:])
            return Listener.from_fd(fd, addr, proto, modifier1, modifier2, None, internal)
        except (ValueError, OSError) as e:
            raise BindError(f"cannot use inherited socket {addr}: {getattr(e, 'strerror', None) or e}") from None
    family, sockaddr, path = parse_address(addr)
    if family == socket.AF_UNIX and path and option_value(opts, "abstract_socket", False):
        sockaddr, path = "\0" + path, None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Inherited by accepted sockets on Linux: streamed chunks are not held back by Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # not on a raw socket (uWSGI's --raw-socket neither): its server may speak first
            defer = not option_value(opts, "no_defer_accept", False) and proto != "raw"
            if defer and hasattr(socket, "TCP_DEFER_ACCEPT"):
                # A worker wakes for a connection with its request already there: the first read
                # succeeds, no failed read and epoll round trip (uWSGI's default, on every TCP
                # socket). Behind nginx it saves CPU; for direct HTTP clients opening a connection
                # per request, the p99 at 2000 req/s was ~10% lower (4 of 5 paired runs).
                timeout = int(option_value(opts, "socket_timeout", 4) or 4)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, max(1, timeout))
            if option_value(opts, "reuse_port", False):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if option_value(opts, "so_keepalive", False):
                # inherited by accepted connections: the kernel probes idle peers (uWSGI sets it here too)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        elif path:
            _unlink_stale(path)
        sock.bind(sockaddr)
        if path:
            mode = _chmod_mode(option_value(opts, "chmod_socket", None))
            if mode is not None:
                os.chmod(path, mode)
            owner = option_value(opts, "chown_socket", None)
            if owner:
                os.chown(path, *_owner_ids(str(owner)))
        sock.listen(backlog)
        sock.setblocking(False)
    except (OSError, BindError) as e:
        sock.close()
        if path and isinstance(e, BindError):
            _unlink_quietly(path)
        if isinstance(e, BindError):
            raise
        raise BindError(f"cannot bind {addr}: {e.strerror or e}") from None
    return Listener(sock, addr, proto, modifier1, modifier2, path, internal)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _unlink_stale(path: str) -> None:
    """Remove a unix socket file left by a dead instance; refuse to clobber a live one or a non-socket."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(17, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)   # nobody answers: stale
        return
    finally:
        probe.close()
    raise OSError(98, "Address already in use (another process is listening)")


def resolve_shared(addr: str, opts) -> str:
    """uWSGI's `=N`: the address of the Nth --shared-socket (from 0). Every socket here is bound
    by the master before privileges drop, which is what a shared socket is for."""
    if not addr.startswith("="):
        return addr
    shared = option_value(opts, "shared_socket", []) or []
    try:
        return shared[int(addr[1:])]
    except (ValueError, IndexError):
        raise BindError(f"{addr}: there is no --shared-socket {addr[1:]} ({len(shared)} declared, "
                        f"numbered from 0)") from None


# --protocol / --socket-protocol: what uWSGI calls its protocols -> ours. http11 is uWSGI's
# keep-alive HTTP, which an HTTP socket here always is (unless --http-keepalive=0).
PROTOCOLS = {"uwsgi": "uwsgi", "http": "http", "http11": "http", "raw": "raw"}   # raw: uwsgid/net/raw.py
_UNSUPPORTED_PROTOCOLS = ("puwsgi", "suwsgi", "https", "fastcgi", "fastcgi-nph", "scgi", "scgi-nph")


def default_protocol(opts) -> str:
    """The protocol of --socket (uWSGI's "default sockets"): --protocol, else uwsgi."""
    name = str(option_value(opts, "protocol", "") or "uwsgi").strip().lower()
    proto = PROTOCOLS.get(name)
    if proto is None:
        if name in _UNSUPPORTED_PROTOCOLS:
            raise BindError(f"--protocol {name}: not supported here (uwsgi, http, http11 and raw are): "
                            f"put nginx or the --http router in front for the others")
        raise BindError(f"--protocol {name}: unknown protocol (uwsgi, http, http11 or raw)")
    return proto


def _wanted(opts) -> list[tuple[str, str, int, int, bool]]:
    """(addr, proto, modifier1, modifier2, internal) for every socket the workers serve."""
    wanted = []
    m1 = int(option_value(opts, "http_socket_modifier1", 0))
    m2 = int(option_value(opts, "http_socket_modifier2", 0))
    proto = default_protocol(opts)
    raw_mods = (int(option_value(opts, "raw_modifier1", 0)), int(option_value(opts, "raw_modifier2", 0)))
    for addr in option_value(opts, "socket", []) or []:
        mods = (m1, m2) if proto == "http" else raw_mods if proto == "raw" else (0, 0)
        wanted.append((resolve_shared(addr, opts), proto, *mods, False))
    for addr in option_value(opts, "raw_socket", []) or []:
        wanted.append((resolve_shared(addr, opts), "raw", *raw_mods, False))
    for addr in option_value(opts, "uwsgi_socket", []) or []:
        wanted.append((resolve_shared(addr, opts), "uwsgi", 0, 0, False))
    for addr in [*(option_value(opts, "http_socket", []) or []), *(option_value(opts, "http11_socket", []) or [])]:
        wanted.append((resolve_shared(addr, opts), "http", m1, m2, False))
    for spec in option_value(opts, "https_socket", []) or []:
        wanted.append((resolve_shared(str(spec).split(",")[0].strip(), opts), "http", m1, m2, False))
    if (option_value(opts, "http", []) or option_value(opts, "https", [])) and not any(w[1] == "uwsgi" for w in wanted):
        # The --http router (uwsgid/server/router.py) forwards to this uwsgi socket.
        wanted.append(("127.0.0.1:0", "uwsgi", 0, 0, True))
    return wanted


def bind_all(opts) -> list[Listener]:
    """Bind every --socket / --http-socket (plus the internal socket for --http) before fork.

    Descriptors inherited from a re-exec'd master (UWSGI_LISTEN_FDS) are adopted when their
    name and protocol match a wanted socket; inherited ones no longer wanted are closed.
    Raises BindError (one line) on the first failure, after closing what was bound.
    """
    # The response options are read here, once, in the master before fork (the workers inherit
    # them): a bad value stops the start with its one line, as a bad address does.
    from uwsgid.net import request
    from uwsgid.net.protocols import keepalive_seconds
    try:
        request.configure(opts)
        keepalive_seconds(option_value(opts, "http_keepalive", "1"))
    except ValueError as e:
        raise BindError(str(e)) from None
    backlog = int(option_value(opts, "listen", 100) or 100)
    maxconn = _somaxconn()
    if maxconn and backlog > maxconn:
        # as uWSGI: a queue the kernel would silently cut is a configuration error
        raise BindError(f"--listen {backlog}: listen queue size is greater than the system max "
                        f"net.core.somaxconn ({maxconn})")
    inherited = _inherited()
    listeners: list[Listener] = []
    try:
        for addr, proto, m1, m2, internal in _wanted(opts):
            key = (addr, proto, internal)
            desc = inherited.pop(key, None)
            if desc is not None:
                listeners.append(Listener.from_fd(desc["fd"], addr, proto, m1, m2, desc.get("path"), internal))
            else:
                listeners.append(bind_address(addr, opts, proto, m1, m2, internal))
        _attach_tls(listeners, opts)
    except BindError:
        for lst in listeners:
            lst.close()
        raise
    finally:
        for desc in inherited.values():
            try:
                os.close(desc["fd"])
            except OSError:
                pass
        os.environ.pop(ENV_FDS, None)
    return listeners


def _attach_tls(listeners: list[Listener], opts) -> None:
    """The --https-socket listeners get their certificates (and --sni's), loaded here in the
    master before fork: a bad file stops the start with one line."""
    specs = option_value(opts, "https_socket", []) or []
    if not specs:
        if option_value(opts, "sni", []) and not option_value(opts, "https", []):
            raise BindError("--sni: no --https-socket or --https to serve its certificates on")
        return
    from uwsgid.net import tls  # ssl is imported only by an instance that serves TLS
    try:
        sni = tls.Sni(option_value(opts, "sni", []))
        by_addr = {}
        for spec in specs:
            addr, cert, key, ciphers, ca = tls.parse_spec(spec, "https-socket")
            ctx = tls.make_context(cert, key, ciphers, ca, where=f"--https-socket {addr}")
            sni.attach(ctx)
            by_addr[resolve_shared(addr, opts)] = ctx
    except tls.TlsConfigError as e:
        raise BindError(str(e)) from None
    for lst in listeners:
        ctx = by_addr.get(lst.name)
        if ctx is not None and lst.proto == "http":
            lst.tls = ctx


def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def export_listeners(listeners: list[Listener]) -> str:
    """Make the listeners inheritable across exec and describe them: put the result in
    os.environ[ENV_FDS] before re-exec'ing the master; bind_all() adopts them."""
    for lst in listeners:
        os.set_inheritable(lst.fd, True)
    import json  # only a reload needs it: not carried into every worker
    return json.dumps([lst.describe() for lst in listeners])


def _inherited() -> dict:
    text = os.environ.get(ENV_FDS)
    if not text:
        return {}
    import json
    try:
        items = json.loads(text)
    except ValueError:
        return {}
    out = {}
    for d in items:
        try:
            fd = int(d["fd"])
            os.fstat(fd)
        except (KeyError, ValueError, TypeError, OSError):
            continue
        out[(d.get("name"), d.get("proto"), bool(d.get("internal")))] = d
    return out
