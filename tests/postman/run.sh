#!/usr/bin/env bash
# The official RealWorld conformance suite (newman) against the API served by uWSGI
# with the production configuration (docker/uwsgi.ini), on SQLite and, when
# TEST_DATABASE_URL is set, on PostgreSQL. Exits non-zero on any failed assertion.
#
#   tests/postman/run.sh                 # SQLite, plus PostgreSQL if TEST_DATABASE_URL is set
#   BACKENDS=sqlite tests/postman/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

ROOT=$PWD
BIN=${BIN:-$ROOT/.venv/bin}
NEWMAN=${NEWMAN:-$ROOT/node_modules/.bin/newman}
PORT=${POSTMAN_PORT:-8765}
BACKENDS=${BACKENDS:-sqlite${TEST_DATABASE_URL:+ postgres}}

for program in "$BIN/uwsgi" "$NEWMAN"; do
  [ -x "$program" ] || { echo "postman: $program is missing (run make install / npm ci)" >&2; exit 1; }
done
# The pinned collection (tests/upstream.toml): downloaded once, or from $REALWORLD_DIR.
COLLECTION=$("$BIN/python" -m tests.upstream fetch realworld | grep -F Conduit.postman_collection.json)

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  SERVER_PID=
}
trap 'stop_server; rm -rf "$WORK"' EXIT

fresh_postgres_url() {
  # A database of its own, so the suite's data never mixes with the unit tests'.
  "$BIN/python" - "$TEST_DATABASE_URL" <<'PY'
import sys
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
url = make_url(sys.argv[1].replace("postgresql://", "postgresql+psycopg://", 1))
name = "conduit_postman"
with create_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    conn.execute(text(f"CREATE DATABASE {name}"))
print(url.set(database=name).render_as_string(hide_password=False))
PY
}

run_suite() {
  local backend=$1 database_url
  case "$backend" in
    sqlite) database_url="sqlite:///$WORK/postman.sqlite" ;;
    postgres)
      [ -n "${TEST_DATABASE_URL:-}" ] || { echo "postman: postgres needs TEST_DATABASE_URL" >&2; return 1; }
      database_url=$(fresh_postgres_url) ;;
    *) echo "postman: unknown backend $backend" >&2; return 1 ;;
  esac
  echo "== Postman suite on $backend, uWSGI on 127.0.0.1:$PORT"

  export CONDUIT_ENV=production DATABASE_URL="$database_url" FLASK_APP=conduit
  CONDUIT_SECRET=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(48))')
  export CONDUIT_SECRET
  "$BIN/flask" db upgrade >"$WORK/migrate-$backend.log" 2>&1 \
    || { cat "$WORK/migrate-$backend.log" >&2; return 1; }

  PORT=$PORT "$BIN/uwsgi" --ini docker/uwsgi.ini >"$WORK/uwsgi-$backend.log" 2>&1 &
  SERVER_PID=$!
  local ready=
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$ready" ]; then
    echo "postman: uWSGI did not become ready; its log:" >&2
    cat "$WORK/uwsgi-$backend.log" >&2
    return 1
  fi

  local id status=0
  id="u$(date +%s%N)"
  "$NEWMAN" run "$COLLECTION" --bail failure --reporters cli,json \
    --reporter-json-export "$WORK/newman-$backend.json" \
    --global-var "APIURL=http://127.0.0.1:$PORT/api" \
    --global-var "USERNAME=$id" --global-var "EMAIL=$id@example.com" \
    --global-var "PASSWORD=password" >"$WORK/newman-$backend.txt" 2>&1 || status=$?
  stop_server
  "$BIN/python" - "$WORK/newman-$backend.json" "$backend" <<'PY' || status=1
import json, sys
stats = json.load(open(sys.argv[1]))["run"]["stats"]
a, r = stats["assertions"], stats["requests"]
print(f"postman {sys.argv[2]}: {r['total']} requests, {a['total']} assertions, {a['failed']} failed")
sys.exit(1 if a["failed"] or r["failed"] or a["total"] == 0 else 0)
PY
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$WORK/newman-$backend.txt" >&2
    echo "postman: uWSGI log:" >&2; tail -n 40 "$WORK/uwsgi-$backend.log" >&2
    return 1
  fi
}

for backend in $BACKENDS; do
  run_suite "$backend"
done
