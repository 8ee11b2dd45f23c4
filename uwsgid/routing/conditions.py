"""The conditions of --route-if / --route-if-not: core/routing.c's, with its names.

A condition's text is `NAME:ARGS`; ARGS are translated per request (uwsgid.routing.translate).
The two-operand ones split ARGS at the first `;` (a missing `;` is false, as in uWSGI). A
condition answers (True/False, groups): groups are the `$N` values of a `regexp` condition.
`compile(name, args)` raises ValueError (one line) for an unknown name or a bad regexp.
"""

from __future__ import annotations

import operator
import os
import re

from uwsgid.routing.translate import Text, num

CONDITIONS: dict = {}     # name -> (factory(args: bytes) -> test(req) -> (bool, groups), doc)


def condition(*names: str, doc: str):
    def register(factory):
        for n in names:
            CONDITIONS[n] = (factory, doc)
        return factory
    return register


def compile(name: str, args: bytes):
    entry = CONDITIONS.get(name)
    if entry is None:
        raise ValueError(f"unable to find \"{name}\" route condition")
    return entry[0](args)


_TRUE, _FALSE = (True, ()), (False, ())


def _one(args: bytes, pred):
    render = Text(args).render

    def test(req):
        return _TRUE if pred(render(req)) else _FALSE
    return test


def _two(args: bytes, pred):
    left, semi, right = args.partition(b";")
    if not semi:
        return lambda req: _FALSE
    a = Text(left).render
    b = Text(right)
    if not b.dynamic:        # the common `equal:${VAR};value`: the right side is compiled once
        fixed = b.raw

        def test_fixed(req):
            return _TRUE if pred(a(req), fixed) else _FALSE
        return test_fixed
    b = b.render

    def test(req):
        return _TRUE if pred(a(req), b(req)) else _FALSE
    return test


def _numeric(args: bytes, compare):
    """A;B compared as numbers (strtol); a fixed B is read once, at start-up."""
    left, semi, right = args.partition(b";")
    if not semi:
        return lambda req: _FALSE
    if b"$" not in right:
        a = Text(left).render
        limit = num(right)

        def test_fixed(req):
            return _TRUE if compare(num(a(req)), limit) else _FALSE
        return test_fixed
    return _two(args, lambda x, y: compare(num(x), num(y)))


@condition("exists", doc="the path exists")
def _exists(args):
    return _one(args, lambda p: os.path.exists(p))


@condition("isfile", doc="the path is a regular file")
def _isfile(args):
    return _one(args, lambda p: os.path.isfile(p))


@condition("isdir", doc="the path is a directory")
def _isdir(args):
    return _one(args, lambda p: os.path.isdir(p))


@condition("islink", doc="the path is a symbolic link")
def _islink(args):
    return _one(args, lambda p: os.path.islink(p))


@condition("isexec", doc="the path is executable (access X_OK)")
def _isexec(args):
    return _one(args, lambda p: bool(p) and os.access(p, os.X_OK))


@condition("empty", doc="the text is empty")
def _empty(args):
    return _one(args, lambda v: not v)


@condition("equal", "isequal", "eq", "==", doc="A;B: the two texts are equal")
def _equal(args):
    return _two(args, operator.eq)


@condition("startswith", doc="A;B: A starts with B")
def _startswith(args):
    return _two(args, bytes.startswith)


@condition("endswith", doc="A;B: A ends with B")
def _endswith(args):
    return _two(args, bytes.endswith)


@condition("contains", "contain", doc="A;B: B occurs in A")
def _contains(args):
    return _two(args, operator.contains)


@condition("ishigher", ">", doc="A;B: the number A is greater than B (strtol: leading digits)")
def _higher(args):
    return _numeric(args, operator.gt)


@condition("ishigherequal", ">=", doc="A;B: A >= B as numbers")
def _higherequal(args):
    return _numeric(args, operator.ge)


@condition("islower", "<", doc="A;B: A < B as numbers")
def _lower(args):
    return _numeric(args, operator.lt)


@condition("islowerequal", "<=", doc="A;B: A <= B as numbers")
def _lowerequal(args):
    return _numeric(args, operator.le)


def _in_network(version: int):
    def pred(addr: bytes, net: bytes) -> bool:
        try:
            import ipaddress  # here: only ipv4in/ipv6in need it
            ip = ipaddress.ip_address(addr.decode("ascii").strip())
            network = ipaddress.ip_network(net.decode("ascii").strip(), strict=False)
        except (ValueError, UnicodeDecodeError):
            return False
        return ip.version == version == network.version and ip in network
    return pred


@condition("ipv4in", doc="ADDR;NET[/BITS]: the IPv4 address is in the network")
def _ipv4in(args):
    return _two(args, _in_network(4))


@condition("ipv6in", doc="ADDR;NET[/BITS]: the IPv6 address is in the network")
def _ipv6in(args):
    return _two(args, _in_network(6))


@condition("regexp", "re", doc="TEXT;REGEXP: the regexp matches TEXT (a search: anchor it with ^); its groups "
                               "become $1... for the route's action")
def _regexp(args):
    left, semi, right = args.partition(b";")
    if not semi:
        return lambda req: (False, ())
    subject = Text(left)
    pattern = Text(right)
    fixed = None if pattern.dynamic else _compile_re(right)

    def test(req):
        rx = fixed if fixed is not None else _compile_re(pattern.render(req), runtime=True)
        if rx is None:
            return False, ()
        m = rx.search(subject.render(req))
        if m is None:
            return False, ()
        return True, (m.group(0), *m.groups())
    return test


def _compile_re(pattern: bytes, runtime: bool = False):
    try:
        return re.compile(pattern)
    except re.error as e:
        if runtime:
            return None
        raise ValueError(f"bad regexp {pattern.decode('latin-1')!r}: {e}") from None
