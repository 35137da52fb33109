#!/usr/bin/env bash
# The load benchmark, end to end (`make bench`): starts the local PostgreSQL
# (.ci/start-postgres.sh: prod's major), then
# bench/driver.py recreates the conduit_bench database, seeds it, serves the app with
# uWSGI (docker/uwsgi.ini, production settings) on 127.0.0.1 and drives wrk against it.
# Results: bench/results/results.{md,json}; logs: build/bench/. About 3 minutes.
#
#   bench/run.sh                          # the full run
#   bench/run.sh --only articles tags     # some scenarios (the /healthz ceiling always runs)
#   bench/run.sh --profile articles --profile-format raw   # py-spy on the workers
#   BENCH_DATABASE_URL=postgresql://... bench/run.sh       # another server: not started here
#   BENCH_SERVER_VENV=.venv bench/run.sh   # serve from another virtualenv (not made here)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-$PWD/.venv/bin}
[ -x "$BIN/python" ] || { echo "bench: $BIN/python is missing (run make install)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

# The server runs from a virtualenv with the image's packages only (Makefile says why);
# made once, again when pyproject.toml or requirements.lock change.
if [ -z "${BENCH_SERVER_VENV:-}" ]; then
  make --no-print-directory build/bench/server-venv/.installed
fi

# The local server of prod's PostgreSQL major; its conduit_bench database.
if [ -z "${BENCH_DATABASE_URL:-}" ]; then
  test_url=$(.ci/start-postgres.sh | sed -n 's/^TEST_DATABASE_URL=//p')
  export BENCH_DATABASE_URL=${test_url%/*}/conduit_bench
fi
exec "$BIN/python" -m bench.driver "$@"
