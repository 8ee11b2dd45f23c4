"""htpasswd files for the basicauth action, read as uWSGI's router_basicauth does: each line
`user:hash`; a `{SHA}` hash is base64(sha1(password)), any other is checked with crypt(3) on its
first 13 characters (traditional DES crypt, what uWSGI's htpasswd_check supports). The file is
read at each check, as uWSGI does, so edits apply at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import warnings

_crypt = None
_crypt_lock = threading.Lock()     # crypt(3) keeps its result in static storage


def _load_crypt():
    global _crypt
    if _crypt is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt as mod  # the standard library's (until Python 3.12)
            _crypt = mod.crypt
        except ImportError:
            _crypt = _libcrypt()
    return _crypt


def _libcrypt():
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("crypt")
    if not name:
        return lambda word, salt: None
    lib = ctypes.CDLL(name)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)

    def crypt(word: str, salt: str):
        out = lib.crypt(word.encode("utf-8", "surrogateescape"), salt.encode("latin-1"))
        return out.decode("latin-1") if out else None
    return crypt


def b64(value: bytes) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=False)
    except (binascii.Error, ValueError):
        return None


def check(path: bytes, credentials: bytes) -> bytes | None:
    """The user name when `user:password` matches a line of the file, else None."""
    user, colon, password = credentials.partition(b":")
    if not colon:
        return None
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        name, colon2, hashed = line.partition(b":")
        if not colon2:
            break               # uWSGI stops at a line without a colon
        hashed = hashed.strip()
        if hashed.startswith(b"{SHA}"):
            ok = hmac.compare_digest(hashed[5:], base64.b64encode(hashlib.sha1(password).digest()))
        else:
            if len(hashed) < 13:
                break
            salted = hashed[:13].decode("latin-1")
            with _crypt_lock:
                out = _load_crypt()(password.decode("utf-8", "surrogateescape"), salted)
            ok = out is not None and hmac.compare_digest(out.encode("latin-1"), salted.encode("latin-1"))
        if ok and name == user:
            return user
    return None
