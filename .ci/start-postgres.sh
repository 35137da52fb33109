#!/usr/bin/env bash
# Starts the local PostgreSQL cluster and creates the test role and database.
# Prints nothing else on success; safe to run again.
set -euo pipefail

PGUSER_NAME=${PGUSER_NAME:-conduit}
PGPASS=${PGPASS:-conduit}
PGDB=${PGDB:-conduit_test}

version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
cluster=main
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -q "^$version $cluster$"; then
  pg_createcluster "$version" "$cluster" >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$version" "$cluster" start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
pg_isready -h 127.0.0.1 -p 5432

psql_admin() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PGUSER_NAME'")" ]; then
  psql_admin -c "CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS' CREATEDB"
fi
for db in "$PGDB" "${PGDB%_test}_postman" "${PGDB%_test}_bench"; do
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    psql_admin -c "CREATE DATABASE $db OWNER $PGUSER_NAME"
  fi
done
