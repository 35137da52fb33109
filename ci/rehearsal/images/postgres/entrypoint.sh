#!/bin/sh
# Initialises $PGDATA on first start the way the official image does for the three
# variables our jobs set (UTF8, as the official image's en_US.utf8), then runs the
# server as the postgres user.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
bin=/opt/postgresql/bin
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "postgres stand-in: POSTGRES_PASSWORD is not set (the official image refuses too)" >&2
  exit 1
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
  pwfile=$(mktemp) && printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile" && chown postgres "$pwfile"
  su postgres -c "$bin/initdb --username='$POSTGRES_USER' --pwfile='$pwfile' --encoding=UTF8 --locale=C.UTF-8 --auth-host=scram-sha-256 --auth-local=trust -D '$PGDATA'" >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    su postgres -c "$bin/postgres --single -D '$PGDATA' -c listen_addresses='' postgres" >/dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
  fi
fi
if [ "$1" = postgres ]; then
  shift
  exec su postgres -c "exec $bin/postgres -D '$PGDATA' -c listen_addresses='*' $*"
fi
exec "$@"
