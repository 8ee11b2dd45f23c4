"""In-process checks of the static room's pure parts: HTTP dates, Range and the conditional
decision, the MIME table's parsing, Accept-Encoding, the lexical `..` check, the option syntax
errors. (Everything else is tested through ./uwsgi in the other files of this folder.)"""

from __future__ import annotations

import calendar
import email.utils

import pytest

from uwsgid.static import conditional, mapping, mime, rules
from uwsgid.static.conditional import decide, http_date, parse_http_date, parse_range
from uwsgid.static.mapping import StaticConfigError


@pytest.mark.parametrize("t", [0, 784111777, 951782400, 1700000000, 2147483647, 4102444800])
def test_http_dates_round_trip_and_match_the_stdlib(t):
    assert http_date(t).decode() == email.utils.formatdate(t, usegmt=True)
    assert parse_http_date(http_date(t)) == t


@pytest.mark.parametrize("text,want", [
    (b"Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
    (b"Sunday, 06-Nov-94 08:49:37 GMT", 784111777),        # RFC 850
    (b"Sun Nov  6 08:49:37 1994", 784111777),               # asctime
    (b"  Sun, 06 Nov 1994 08:49:37 GMT  ", 784111777),
    (b"Sun, 06 Xyz 1994 08:49:37 GMT", None),
    (b"Sun, 06 Nov 1994 08:49:xx GMT", None),
    (b"yesterday", None), (b"", None), (b'"etag"', None),
])
def test_parse_http_date(text, want):
    assert parse_http_date(text) == want


@pytest.mark.parametrize("header,size,want", [
    (b"bytes=0-4", 10, (0, 4)),
    (b"bytes=5-", 10, (5, 9)),
    (b"bytes=-3", 10, (7, 9)),
    (b"bytes=8-100", 10, (8, 9)),
    (b"bytes=2-3, 5-6", 10, (2, 3)),        # the first range only (uWSGI)
    (b"BYTES = 2-3", 10, None),
    (b"Bytes=2-3", 10, (2, 3)),
    (b"bytes=10-", 10, False),              # starts past the end: 416
    (b"bytes=10-20", 10, False),
    (b"bytes=-0", 10, False),
    (b"bytes=0-9", 10, None),               # the whole file: 200
    (b"bytes=0-", 10, None),
    (b"bytes=-10", 10, None),
    (b"bytes=-20", 10, None),
    (b"bytes=5-2", 10, None),               # invalid: ignored
    (b"bytes=a-b", 10, None), (b"bytes=1", 10, None), (b"items=1-2", 10, None), (b"bytes=", 10, None),
    (b"bytes=0-0", 0, None), (b"bytes=5-", 0, None),     # an empty file: 200 (uWSGI)
])
def test_parse_range(header, size, want):
    assert parse_range(header, size) == want


def test_decide():
    lm = http_date(1000)
    assert decide({}, 1000, 10) == (200, 0, 9)
    assert decide({b"HTTP_IF_MODIFIED_SINCE": lm}, 1000, 10)[0] == 304
    assert decide({b"HTTP_IF_MODIFIED_SINCE": http_date(999)}, 1000, 10)[0] == 200
    assert decide({b"HTTP_RANGE": b"bytes=1-2"}, 1000, 10) == (206, 1, 2)
    assert decide({b"HTTP_RANGE": b"bytes=1-2"}, 1000, 10, ranges=False) == (200, 0, 9)
    assert decide({b"HTTP_RANGE": b"bytes=1-2", b"HTTP_IF_RANGE": lm}, 1000, 10) == (206, 1, 2)
    assert decide({b"HTTP_RANGE": b"bytes=1-2", b"HTTP_IF_RANGE": http_date(5)}, 1000, 10) == (200, 0, 9)
    assert decide({b"HTTP_RANGE": b"bytes=99-"}, 1000, 10)[0] == 416
    # If-Modified-Since first (uWSGI's order)
    assert decide({b"HTTP_RANGE": b"bytes=99-", b"HTTP_IF_MODIFIED_SINCE": lm}, 1000, 10)[0] == 304


def test_the_mime_table():
    table = {}
    n = mime.parse(b"# c\n\ntext/css css\ntext/other css oth\n application/x-indented ind\napplication/zip\tzip  z\n",
                   table)
    assert n == 5
    t = mime.MimeTable(table)
    assert t.lookup(b"/a/b.css") == b"text/css"            # the first naming it wins
    assert t.lookup(b"/a/b.oth") == b"text/other"
    assert t.lookup(b"/a/b.ind") is None                   # a line not starting with a letter/digit
    assert t.lookup(b"/a/B.ZIP") == b"application/zip"     # ours: lower case as a second try
    assert t.lookup(b"/a/b.z") == b"application/zip"
    assert t.lookup(b"/a.d/readme") is None
    assert t.lookup(b"/a/noext") is None


def test_accept_encoding():
    assert rules.accepted_encodings(b"gzip, deflate, br") == [(b".br", b"br"), (b".gz", b"gzip")]
    assert rules.accepted_encodings(b"gzip;q=0.5") == [(b".gz", b"gzip")]
    assert rules.accepted_encodings(b"gzip;q=0, br;q=0") == []
    assert rules.accepted_encodings(b"deflate") == []
    assert rules.accepted_encodings(b"x-gzip") == [(b".gz", b"gzip")]
    assert rules.accepted_encodings(b"identity") == []


@pytest.mark.parametrize("rel,climbs", [
    (b"/a/b", False), (b"/a/../b", False), (b"/..", True), (b"/a/../../b", True), (b"..", True),
    (b"/./../x", True), (b"/a/./../b", False), (b"/a..b/", False), (b"/...", False),
])
def test_the_lexical_climb_check(rel, climbs):
    assert mapping._climbs(rel) is climbs


def test_under_is_a_whole_component_prefix():
    assert mapping._under(b"/var/www/a", b"/var/www")
    assert mapping._under(b"/var/www", b"/var/www")
    assert not mapping._under(b"/var/www2/a", b"/var/www")
    assert mapping._under(b"/anything", b"/")


class Opts(dict):
    def get(self, k, default=None):
        return super().get(k, default)


@pytest.mark.parametrize("opts,message", [
    ({"static-map": ["/s"]}, "invalid document root"),
    ({"static-map2": ["/s="]}, "invalid document root"),
    ({"static-expires-type": ["text/css"]}, "syntax is MIME=SECS"),
    ({"static-expires": ["onlyregex"]}, "syntax is REGEX SECS"),
    ({"static-expires-uri": ["x abc"]}, "not a number of seconds"),
    ({"static-gzip": ["(bad"]}, "invalid regular expression"),
])
def test_option_syntax_errors(opts, message):
    with pytest.raises(StaticConfigError, match=message):
        mapping.Mapper(Opts(opts))
        rules.Rules(Opts(opts))


def test_expires_syntax_forms():
    r = rules.Rules(Opts({"static-expires-uri": [r"\.css$ 60", r"\.js$=120", r"a b  30"]}))
    (field, parsed, by_mtime), = r.regex_rules
    assert field == 2 and not by_mtime
    assert [(rx.pattern, secs) for rx, secs in parsed] == [(rb"\.css$", 60), (rb"\.js$", 120), (b"a b", 30)]


def test_maps_are_tried_longest_mountpoint_first():
    m = mapping.Mapper(Opts({"check-static": ["/c"], "static-map": ["/a=/1", "/a/b/c=/2", "/a=/3"],
                             "static-map2": ["/a/b=/4"]}))
    assert [(r.kind, r.mount, r.given) for r in m.roots] == [
        ("check-static", b"", "/c"), ("static-map", b"/a/b/c", "/2"), ("static-map2", b"/a/b", "/4"),
        ("static-map", b"/a", "/1"), ("static-map", b"/a", "/3")]


def test_the_date_cache_is_bounded():
    for t in range(conditional._DATES_MAX + 10):
        http_date(t)
    assert len(conditional._dates) <= conditional._DATES_MAX
    assert calendar.timegm((2023, 11, 14, 22, 13, 20)) == parse_http_date(http_date(1700000000))
