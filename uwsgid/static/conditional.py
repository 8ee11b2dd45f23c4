"""The HTTP semantics of a file response: dates, If-Modified-Since, Range and If-Range.

    decide(vars, mtime, size, ranges=True) -> (status, start, end)
        304            If-Modified-Since is at or after the file's mtime (uWSGI: st_mtime <= ims)
        416            a Range the file cannot satisfy (start past the end); Content-Range bytes */size
        206            one satisfiable byte range, [start, end] inclusive
        200            anything else (no Range, an unparsable one, If-Range not matching)

uWSGI's rules (core/static.c uwsgi_real_file_serve, core/protocol.c uwsgi_parse_http_range,
core/utils.c uwsgi_fix_range_for_size): only the first range of a list is served (a
multi-range request gets that one range as a plain 206); `bytes=N-` runs to the end,
`bytes=-N` is the last N bytes; a range covering the whole file is answered 200. Where we
differ, on purpose: a Range header that is not `bytes=...` or does not parse is ignored (200,
RFC 9110 14.2) where uWSGI answers 416; If-Range is honoured when its date equals the file's
Last-Modified (RFC 9110 13.1.5; uWSGI's test is inverted and drops the range of an unchanged
file); and Range is always honoured for static files (uWSGI wants --honour-range).
"""

from __future__ import annotations

import time

_WDAY = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MON = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_MON_NUM = {m: i + 1 for i, m in enumerate(_MON)}
_dates: dict = {}           # epoch second -> IMF-fixdate (mtimes repeat; "now + N" changes each second)
_DATES_MAX = 4096


def http_date(t: int) -> bytes:
    """b'Sun, 06 Nov 1994 08:49:37 GMT' (RFC 9110 5.6.7 IMF-fixdate)."""
    d = _dates.get(t)
    if d is None:
        g = time.gmtime(t)
        d = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (_WDAY[g.tm_wday], g.tm_mday, _MON[g.tm_mon - 1],
                                                     g.tm_year, g.tm_hour, g.tm_min, g.tm_sec)
        if len(_dates) >= _DATES_MAX:
            _dates.clear()
        _dates[t] = d
    return d


def parse_http_date(value: bytes) -> int | None:
    """Epoch seconds of an HTTP date, None when it is not one (RFC 9110 5.6.7): IMF-fixdate (the
    one format uWSGI reads), and the obsolete RFC 850 and asctime forms."""
    v = value.strip()
    try:
        if len(v) == 29 and v[3:5] == b", " and v[-4:] == b" GMT":        # Sun, 06 Nov 1994 08:49:37 GMT
            mon = _MON_NUM.get(v[8:11])
            if mon is None:
                return None
            return _timegm(int(v[12:16]), mon, int(v[5:7]), int(v[17:19]), int(v[20:22]), int(v[23:25]))
        parts = v.split()
        if len(parts) == 4 and parts[0].endswith(b",") and parts[3] == b"GMT":    # Sunday, 06-Nov-94 08:49:37 GMT
            day, mon, year = parts[1].split(b"-")
            y = int(year)
            if len(year) == 2:
                y += 2000 if y < 70 else 1900
            return _clock(y, _MON_NUM.get(mon), int(day), parts[2])
        if len(parts) == 5 and parts[1] in _MON_NUM:                        # Sun Nov  6 08:49:37 1994
            return _clock(int(parts[4]), _MON_NUM[parts[1]], int(parts[2]), parts[3])
    except ValueError:
        return None
    return None


def _clock(year: int, mon, day: int, hms: bytes) -> int | None:
    h, m, sec = hms.split(b":")
    if mon is None:
        return None
    return _timegm(year, mon, day, int(h), int(m), int(sec))


def _timegm(year: int, mon: int, day: int, hh: int, mm: int, ss: int) -> int:
    # days from civil (Howard Hinnant), for the proleptic Gregorian calendar
    y = year - (mon <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mon + (-3 if mon > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss


def parse_range(value: bytes, size: int):
    """The first byte range of a Range header for a file of `size` bytes:
    None (ignore it: 200), (start, end) inclusive (206), or False (unsatisfiable: 416)."""
    v = value.strip()
    if v[:6].lower() != b"bytes=" or size == 0:
        return None           # an empty file: 200 whatever the range (uWSGI's answer too)
    spec = v[6:].split(b",", 1)[0].strip()
    first, dash, last = spec.partition(b"-")
    if not dash:
        return None
    first = first.strip()
    last = last.strip()
    if first:
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        if last and int(last) < start:
            return None       # RFC 9110 14.1.1: invalid, the header is ignored
        if start >= size:
            return False
        end = min(int(last), size - 1) if last else size - 1
    else:
        if not last.isdigit():
            return None
        n = int(last)
        if n == 0:
            return False      # a zero-length suffix cannot be satisfied
        start = max(0, size - n)
        end = size - 1
    if start == 0 and end == size - 1:
        return None           # the whole file: 200 (uWSGI does the same)
    return start, end


def decide(v: dict, mtime: int, size: int, ranges: bool = True) -> tuple:
    """(status, start, end) for a GET/HEAD of a file (see the module doc); v: the request's vars."""
    ims = v.get(b"HTTP_IF_MODIFIED_SINCE")
    if ims is not None:
        t = parse_http_date(ims)
        if t is not None and mtime <= t:
            return 304, 0, -1
    rng = v.get(b"HTTP_RANGE") if ranges else None
    if rng is not None:
        r = parse_range(rng, size)
        if r is False:
            return 416, 0, -1
        if r is not None:
            if_range = v.get(b"HTTP_IF_RANGE")
            if if_range is None or parse_http_date(if_range) == mtime:
                return 206, r[0], r[1]
    return 200, 0, size - 1
