#!/usr/bin/env bash
# Starts a local PostgreSQL cluster that stores text as UTF8, and creates the test role
# and databases. Safe to run again. Its last line is the TEST_DATABASE_URL to export.
#
#   PGPORT     port of the cluster (default 5432)
#   POSTGRES_CLUSTER  cluster name, for pg_createcluster (default main)
#   PGUSER_NAME, PGPASS, PGDB   the test role, its password and database
set -euo pipefail

PGPORT=${PGPORT:-5432}
POSTGRES_CLUSTER=${POSTGRES_CLUSTER:-main}
PGUSER_NAME=${PGUSER_NAME:-conduit}
PGPASS=${PGPASS:-conduit}
PGDB=${PGDB:-conduit_test}

die() { echo "start-postgres: $*" >&2; exit 1; }
command -v pg_createcluster >/dev/null || die "PostgreSQL is not installed (make prerequisites)"
version=$(ls /usr/lib/postgresql | sort -V | tail -n1)

# pg_lsclusters -h: version, cluster, port, status, ...
read -r _ _ port status _ < <(pg_lsclusters -h | awk -v v="$version" -v c="$POSTGRES_CLUSTER" '$1 == v && $2 == c') || true
if [ -z "${port:-}" ]; then
  # The machine's locale may be POSIX, which would make a SQL_ASCII cluster.
  pg_createcluster --port "$PGPORT" --encoding UTF8 --locale C.UTF-8 "$version" "$POSTGRES_CLUSTER" >/dev/null
  status=down
elif [ "$port" != "$PGPORT" ]; then
  die "cluster $version/$POSTGRES_CLUSTER listens on port $port, not $PGPORT (set PGPORT=$port, or POSTGRES_CLUSTER to a new name)"
fi
if [ "$status" != online ]; then
  pg_ctlcluster "$version" "$POSTGRES_CLUSTER" start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$PGPORT" && break
  sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PGPORT" || die "the server on port $PGPORT does not answer"

psql_admin() { runuser -u postgres -- psql -p "$PGPORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
encoding=$(psql_admin -c "SHOW server_encoding")
[ "$encoding" = UTF8 ] || die "cluster $version/$POSTGRES_CLUSTER stores text as $encoding, the tests need UTF8: \
drop it (pg_dropcluster --stop $version $POSTGRES_CLUSTER) and run this again"

if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PGUSER_NAME'")" ]; then
  psql_admin -c "CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS' CREATEDB"
fi
for db in "$PGDB" "${PGDB%_test}_postman" "${PGDB%_test}_bench"; do
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    psql_admin -c "CREATE DATABASE $db OWNER $PGUSER_NAME ENCODING 'UTF8'"
  fi
done
echo "TEST_DATABASE_URL=postgresql+psycopg://$PGUSER_NAME:$PGPASS@127.0.0.1:$PGPORT/$PGDB"
