#!/bin/sh
# Regenerate real/: spool files written by Debian's uWSGI 2.0.21 (see README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/uwsgi --plugin python3 --master --processes 1 --socket "$tmp/s.sock" \
    --spooler-external "$tmp/spool" --wsgi-file "$here/gen_app.py" --pidfile "$tmp/pid" \
    >"$tmp/log" 2>&1 &
i=0
until grep -q SPOOLED "$tmp/log" 2>/dev/null && [ -s "$tmp/pid" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { cat "$tmp/log"; exit 1; }; sleep 0.1
done
kill -INT "$(cat "$tmp/pid")"
wait
rm -rf "$here/real"
mkdir -p "$here/real"
cp -a "$tmp/spool/." "$here/real/"
ls -lR "$here/real"
