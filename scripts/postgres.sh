#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the tests (Debian's postgresql package).
#   scripts/postgres.sh start DIR [PORT]  → prints its URL (superuser "talks", trust auth, database "talks")
#   scripts/postgres.sh stop DIR
set -euo pipefail

bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$bindir" ]; then
  echo "PostgreSQL is not installed (Debian: apt-get install postgresql)" >&2
  exit 1
fi

as_owner() {  # initdb and postgres refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

action="${1:?start|stop}" dir="${2:?data folder}"
case "$action" in
  start)
    port="${3:-54329}"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bindir/initdb" --pgdata="$dir/data" --username=talks --auth=trust --encoding=UTF8 >"$dir/initdb.log"
    as_owner "$bindir/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait \
      --options="-h 127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
    "$bindir/createdb" --host=127.0.0.1 --port="$port" --username=talks talks
    echo "postgresql://talks@127.0.0.1:$port/talks"
    ;;
  stop)
    as_owner "$bindir/pg_ctl" --pgdata="$dir/data" --mode=fast stop >/dev/null
    ;;
  *)
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2
    exit 2
    ;;
esac
