#!/usr/bin/env bash
# A private PostgreSQL for the tests (the PostgreSQL backend's conformance suite), in a folder
# of its own:
#   scripts/postgres.sh start DIR   prints its URL (postgres://kumo@127.0.0.1:PORT/postgres)
#                                   once it accepts connections
#   scripts/postgres.sh stop DIR
# Installs Debian's postgresql when it is missing (as root). PostgreSQL refuses to run as
# root, so as root it runs as the `postgres` user that package creates.
set -euo pipefail
command=${1:?start or stop}
dir=${2:?a folder}
bindir() {
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    return 1
}
bin=$(bindir || true)
if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    bin=$(bindir || true)
fi
if [ -z "$bin" ]; then
    echo "no PostgreSQL here (install Debian's postgresql)" >&2
    exit 1
fi
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$command" in
start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U kumo --no-sync >/dev/null
    # A throwaway server: durability is not what the tests check. KUMO_PG_DURABLE=1 (the
    # benchmark) keeps fsync and drops only the wait for it at commit, as kumo's SQLite does
    # (WAL, synchronous=NORMAL: a crash may lose the last commits, never consistency).
    durability="-c fsync=off"
    if [ "${KUMO_PG_DURABLE:-}" = 1 ]; then durability="-c synchronous_commit=off"; fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir $durability -c max_connections=200" \
        start >/dev/null
    echo "postgres://kumo@127.0.0.1:$port/postgres"
    ;;
stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
