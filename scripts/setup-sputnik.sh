#!/usr/bin/env bash
# Prepare the data directory of examples/sputnik.ws: a writable dir outside the source tree
# with the wiki's SQLite database created once (so that many lua_States, threads and workers
# starting at the same time find it ready). Safe to re-run; keeps existing pages.
#
#   scripts/setup-sputnik.sh [DIR]     DIR defaults to $SPUTNIK_DIR, else
#                                      ${TMPDIR:-/tmp}/uwsgid-sputnik-USER
#
# USER is $USER, else `id -un`, else the numeric uid: examples/sputnik.ws derives the same default
# the same way, so the two agree where $USER is unset (containers, cron, systemd).
# Needs Debian's packages sputnik, lua-sql-sqlite3, lua-md5, lua-wsapi (scripts/setup-system.sh).
set -euo pipefail

TMP="${TMPDIR:-/tmp}"
DIR="${1:-${SPUTNIK_DIR:-${TMP%/}/uwsgid-sputnik-${USER:-$(id -un 2>/dev/null || id -u)}}}"
mkdir -p "$DIR"
if [ ! -w "$DIR" ]; then
    echo "setup-sputnik: $DIR is not writable" >&2
    exit 1
fi

for f in /usr/share/lua/5.1/sputnik/init.lua /usr/share/lua/5.1/versium/sqlite3.lua \
         /usr/lib/x86_64-linux-gnu/lua/5.1/luasql/sqlite3.so; do
    if [ ! -e "$f" ]; then
        echo "setup-sputnik: $f is missing: install Debian's sputnik and lua-sql-sqlite3 (scripts/setup-system.sh)" >&2
        exit 1
    fi
done

LUA="$(command -v lua5.1 || command -v luajit || true)"
if [ -n "$LUA" ]; then
    # versium.sqlite3 creates its two tables (CREATE TABLE IF NOT EXISTS) when it connects.
    SPUTNIK_DB="$DIR/sputnik.db" "$LUA" -e '
        luasql = require "luasql.sqlite3"
        local versium = require "versium.sqlite3"
        versium.new({ os.getenv("SPUTNIK_DB") })
    '
fi
echo "sputnik data: $DIR (run with SPUTNIK_DIR=$DIR ./uwsgi ... --lua examples/sputnik.ws)"
