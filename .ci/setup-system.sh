#!/usr/bin/env bash
# Installs the system programs the test tiers drive (Debian/Ubuntu, as root): what
# `make prerequisites` runs. Idempotent: only missing packages are installed. Node is not
# here: `make test` installs a pinned Node from PyPI into .venv.
set -euo pipefail

packages=(
  postgresql postgresql-client  # API tests on PostgreSQL, Postman on PostgreSQL, benchmark
  docker.io debootstrap docker-registry  # image build, local base image, local registry
  prometheus                    # promtool: alert rules check and unit tests
  wrk                           # load benchmark
  rsync                         # gitlab-ci-local copies the checkout (make rehearse)
  python3-venv python3-dev libpq-dev gcc  # restore drill: Barman Cloud's venv (psycopg2 builds)
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
  # Services are started by the scripts that need them, not by the package scripts.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
else
  echo "setup-system: all system packages present"
fi
