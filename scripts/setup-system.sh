#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing. Usage: setup-system.sh base|bench
set -euo pipefail
base=(libffi-dev lua-wsapi lua-sql-sqlite3 lua-md5 sputnik nginx-light redis-server wrk openssl curl
      apache2 libapache2-mod-proxy-uwsgi)
bench=(uwsgi-core uwsgi-plugin-lua5.1 uwsgi-plugin-python3 uwsgi-plugin-gevent-python3 lua-socket)
want=("${base[@]}")
[ "${1:-base}" = bench ] && want+=("${bench[@]}")
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${missing[*]} (run as root: apt-get install -y ${missing[*]})" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts nginx, redis and apache2 on install; the project starts its own on free ports.
for svc in nginx redis-server apache2; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
done
