#!/usr/bin/env bash
# End-to-end proof of the production image on this machine, with no registry to pull
# from: build it on a local Debian base, migrate with three containers at once, serve
# behind nginx routed like the Kubernetes ingress and pass the RealWorld Postman suite,
# survive a PostgreSQL restart, round-trip through a registry, stop gracefully.
#
#   docker/test-image.sh          (as root; `make test-image` runs it)
#
# Environment (all optional):
#   BASE_IMAGE      base of the build (default conduit-base:bookworm, built here by
#                   docker/build-base-image.sh); any image already present works,
#                   e.g. python:3.11-slim-bookworm on a machine that can pull it
#   IMAGE_NAME      local repository of the built image (default conduit)
#   APP_PORT, NGINX_PORT, REGISTRY_PORT, PG_PORT
#                   loopback ports (default: free ones picked at start)
#   REALWORLD_DIR   folder holding the pinned RealWorld files (tests/upstream.toml);
#                   unset, they are downloaded once into build/upstream/
#   KEEP_WORKDIR=1  keep the temporary folder (logs, nginx.conf) for a look afterwards
#
# The database is a PostgreSQL server of its own, created in the temporary folder and
# removed at the end: the test stops and restarts it, which it must not do to a
# server other work shares. Everything started here is removed on exit, pass or fail.
# Exits non-zero on the first failed check; measurements are printed at the end and
# written to reports/image-metrics.txt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$root/node_modules/.bin:$PATH"

IMAGE_NAME=${IMAGE_NAME:-conduit}
BASE_IMAGE=${BASE_IMAGE:-conduit-base:bookworm}

step_number=0
step() { step_number=$((step_number + 1)); printf '\n==> [%d] %s\n' "$step_number" "$*"; }
info() { echo "    $*"; }
fail() { echo "test-image: FAILED: $*" >&2; exit 1; }
metrics=()
measure() { metrics+=("$1"); info "measured: $1"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# http_status URL -> the status code, 000 when nothing answers
http_status() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" || true; }
wait_for_status() { # URL STATUS TIMEOUT_S
  local deadline
  deadline=$(awk -v t="$3" -v n="$(now)" 'BEGIN { printf "%.3f", n + t }')
  until [ "$(http_status "$1")" = "$2" ]; do
    awk -v d="$deadline" -v n="$(now)" 'BEGIN { exit !(n > d) }' && return 1
    sleep 0.05
  done
}
# The PostgreSQL server refuses to run as root.
as_postgres() { runuser -u postgres -- "$@"; }

# --- prerequisites ---------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "run as root (installs and starts the Docker engine)"
# The pinned collection (tests/upstream.toml): downloaded once, or from $REALWORLD_DIR.
COLLECTION=$(python -m tests.upstream fetch realworld | grep -F Conduit.postman_collection.json) \
  || fail "the pinned Postman collection is not available (see the line above)"
pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)
[ -x "$pg_bin/initdb" ] || fail "PostgreSQL server binaries not found (apt-get install postgresql)"
for program in nginx docker-registry newman psql curl git conduit-deploy; do
  command -v "$program" >/dev/null || fail "$program is not installed (.ci/setup-system.sh, make install, npm ci)"
done

work=$(mktemp -d /tmp/conduit-image.XXXXXX)
chmod 755 "$work"  # the PostgreSQL server runs as postgres inside it
run_label="conduit.test-image=$(basename "$work")"
nginx_pid="" registry_pid="" pg_data=""

cleanup() {
  local status=$?
  set +e
  echo
  echo "==> cleanup"
  docker ps -aq --filter "label=$run_label" | xargs -r docker rm -f >/dev/null
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  [ -n "${pulled:-}" ] && docker rmi "$pulled" >/dev/null 2>&1
  if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m immediate -w stop >/dev/null 2>&1
  fi
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then
    echo "    kept $work"
  else
    rm -rf "$work"
  fi
  if [ "$status" -eq 0 ]; then echo "test-image: all checks passed"; else echo "test-image: FAILED (exit $status)" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

APP_PORT=${APP_PORT:-$(free_port)}
NGINX_PORT=${NGINX_PORT:-$(free_port)}
REGISTRY_PORT=${REGISTRY_PORT:-$(free_port)}
PG_PORT=${PG_PORT:-$(free_port)}
info "work folder $work; ports: app $APP_PORT, nginx $NGINX_PORT, registry $REGISTRY_PORT, PostgreSQL $PG_PORT"

# ---------------------------------------------------------------------------------
step "Docker engine"
if ! command -v dockerd >/dev/null; then
  info "installing docker.io"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
.ci/start-dockerd.sh
info "$(docker version --format 'client {{.Client.Version}}, engine {{.Server.Version}}')"

# ---------------------------------------------------------------------------------
step "Base image $BASE_IMAGE"
if [ "$BASE_IMAGE" = conduit-base:bookworm ]; then
  docker/build-base-image.sh "$BASE_IMAGE"
elif ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  info "$BASE_IMAGE is not present; the build will try to pull it"
fi

# ---------------------------------------------------------------------------------
step "Build the image (docker/Dockerfile, --network host)"
version=$(conduit-deploy version --tag-only)
[ -n "$version" ] || fail "conduit-deploy version --tag-only printed nothing"
image="$IMAGE_NAME:$version"
revision=$(git rev-parse HEAD)
source_url=${CI_PROJECT_URL:-$(git remote get-url origin 2>/dev/null || true)}
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$version"
  --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url")
# How pip reaches its index, when this machine is told by the environment (the base
# image already trusts the machine's CA bundle). Build arguments of the build stage:
# they are not in the final image.
for name in PIP_INDEX_URL PIP_CERT; do
  [ -n "${!name:-}" ] && build_args+=(--build-arg "$name=${!name}")
done
started=$(now)
docker build --network host -f docker/Dockerfile "${build_args[@]}" -t "$image" . >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2
  fail "docker build failed"
}
info "built $image in $(elapsed "$started") s"
image_id=$(docker image inspect -f '{{.Id}}' "$image")

label() { docker image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$1\"}}" "$image"; }
[ "$(label version)" = "$version" ] || fail "label version is '$(label version)', expected $version"
[ "$(label revision)" = "$revision" ] || fail "label revision is '$(label revision)', expected $revision"
info "labels: version $(label version), revision $(label revision), source '$(label source)'"
user=$(docker image inspect -f '{{.Config.User}}' "$image")
case "${user%%:*}" in "" | 0 | root) fail "the image runs as '$user'" ;; esac
[ "$(docker run --rm "$image" id -u)" != 0 ] || fail "the container runs as root"
docker image inspect -f '{{.Config.Healthcheck.Test}}' "$image" | grep -q healthz \
  || fail "no HEALTHCHECK on /healthz"
if docker run --rm "$image" sh -c 'command -v gcc || command -v cc || command -v pip' >/dev/null; then
  fail "the final image contains a compiler or pip"
fi
# What .dockerignore keeps out must not have reached the image.
unwanted=$(docker run --rm "$image" sh -c \
  'find / -xdev \( -path /proc -o -path /sys \) -prune -o \( -name node_modules -o -name .git \
   -o -name "*.sqlite" -o -path "*/site-packages/tests" -o -path /app/tests \) -print 2>/dev/null' || true)
[ -z "$unwanted" ] || fail "the image contains files it should not: $unwanted"
info "runs as user $user; no compiler, no pip, no tests, caches or local databases"

base_size=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
image_size=$(docker image inspect -f '{{.Size}}' "$image")
measure "image size: $((image_size / 1000000)) MB total, $(((image_size - base_size) / 1000000)) MB on top of $BASE_IMAGE ($((base_size / 1000000)) MB)"

# ---------------------------------------------------------------------------------
step "PostgreSQL server for this run (127.0.0.1:$PG_PORT)"
pg_data=$work/pg/data
mkdir -p "$work/pg/run"
chown -R postgres:postgres "$work/pg"
as_postgres "$pg_bin/initdb" -D "$pg_data" -U postgres -E UTF8 --auth-local=trust \
  --auth-host=scram-sha-256 >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; fail "initdb failed"; }
cat >>"$pg_data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$work/pg/run'
EOF
pg_start=("$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg/server.log" -w start)
pg_stop=("$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop)
as_postgres "${pg_start[@]}" >/dev/null
db_password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
as_postgres psql -h "$work/pg/run" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE ROLE conduit LOGIN PASSWORD '$db_password'" -c "CREATE DATABASE conduit OWNER conduit"
database_url="postgresql://conduit:$db_password@127.0.0.1:$PG_PORT/conduit"
psql_app() { psql "$database_url" -v ON_ERROR_STOP=1 -qtA "$@"; }
info "$(psql_app -c 'SHOW server_version') up; database conduit owned by role conduit"

# The app's settings, given to every container through a file (not on command lines).
cat >"$work/app.env" <<EOF
DATABASE_URL=$database_url
CONDUIT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
EOF
chmod 600 "$work/app.env"
run_container() { docker run --label "$run_label" --network host --env-file "$work/app.env" "$@"; }

# ---------------------------------------------------------------------------------
step "Migrations: three 'flask db upgrade' containers at once"
for i in 1 2 3; do
  run_container --rm "$image" flask db upgrade >"$work/migrate-$i.log" 2>&1 &
  migrators[i]=$!
done
for i in 1 2 3; do
  wait "${migrators[i]}" || { cat "$work/migrate-$i.log" >&2; fail "migration container $i exited non-zero"; }
done
read -r heads revisions < <(python - <<'EOF'
from alembic.config import Config
from alembic.script import ScriptDirectory
config = Config()
config.set_main_option("script_location", "migrations")
scripts = ScriptDirectory.from_config(config)
print(",".join(sorted(scripts.get_heads())), len(list(scripts.walk_revisions())))
EOF
)
applied=$(cat "$work"/migrate-*.log | grep -c 'Running upgrade' || true)
appliers=$(grep -l 'Running upgrade' "$work"/migrate-*.log | wc -l)
[ "$applied" = "$revisions" ] || fail "$applied migrations applied in all, expected each of $revisions once"
[ "$appliers" = 1 ] || fail "$appliers containers applied migrations, expected exactly one"
at=$(psql_app -c "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version")
[ "$at" = "$heads" ] || fail "database at revision '$at', expected head '$heads'"
info "all three exited 0; one applied $revisions migration(s), the others waited; schema at $heads"

# ---------------------------------------------------------------------------------
step "Server container: uWSGI on port $APP_PORT"
started=$(now)
server=$(run_container -d --name "conduit-server-$APP_PORT" -e PORT="$APP_PORT" "$image")
wait_for_status "http://127.0.0.1:$APP_PORT/readyz" 200 60 || {
  docker logs "$server" 2>&1 | tail -n 30 >&2
  fail "/readyz did not answer 200 within 60 s"
}
measure "container start to /readyz 200: $(elapsed "$started") s"
[ "$(http_status "http://127.0.0.1:$APP_PORT/healthz")" = 200 ] || fail "/healthz is not 200"
curl -s "http://127.0.0.1:$APP_PORT/readyz"; echo

# ---------------------------------------------------------------------------------
step "nginx with the ingress's routing (/flask/... -> /...) on 127.0.0.1:$NGINX_PORT"
mkdir -p "$work/nginx"
python -m tests.k8s.nginx_conf --ingress k8s/base --listen "127.0.0.1:$NGINX_PORT" \
  --upstream "127.0.0.1:$APP_PORT" --prefix "$work/nginx" >"$work/nginx/nginx.conf"
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
wait_for_status "http://127.0.0.1:$NGINX_PORT/flask/healthz" 200 15 || {
  cat "$work/nginx/error.log" >&2
  fail "nginx did not route /flask/healthz to the app"
}
info "GET /flask/healthz -> 200 through nginx"

step "RealWorld Postman suite through http://127.0.0.1:$NGINX_PORT/flask/api"
stamp=$(date +%s%N)
newman run "$COLLECTION" --color off --reporters cli \
  --global-var "APIURL=http://127.0.0.1:$NGINX_PORT/flask/api" \
  --global-var "USERNAME=img$stamp" --global-var "EMAIL=img$stamp@example.com" \
  --global-var "PASSWORD=password" >"$work/newman.log" 2>&1 || {
  cat "$work/newman.log" >&2
  fail "the Postman suite failed"
}
sed -n '/^┌─/,$p' "$work/newman.log"  # the summary table

step "Deploy smoke test through nginx"
conduit-deploy smoke "http://127.0.0.1:$NGINX_PORT/flask"

# ---------------------------------------------------------------------------------
step "Benchmark: 1,000 requests, then memory per uWSGI worker"
python - "http://127.0.0.1:$APP_PORT/api" <<'EOF'
import sys
import requests
api = sys.argv[1]
paths = ["/articles?limit=10", "/tags", "/articles?limit=5&offset=5", "/articles/no-such-slug"]
with requests.Session() as session:
    for i in range(1000):
        response = session.get(api + paths[i % len(paths)], timeout=10)
        assert response.status_code in (200, 404), (response.status_code, response.text[:200])
EOF
while read -r pid rss args; do
  measure "RSS of $args (pid $pid) after 1,000 requests: $((rss / 1024)) MiB"
done < <(docker top "$server" -eo pid,rss,args | awk 'NR > 1 && /uWSGI worker/')
health=$(docker inspect -f '{{.State.Health.Status}}' "$server")
for _ in $(seq 1 40); do
  [ "$health" = starting ] || break
  sleep 1
  health=$(docker inspect -f '{{.State.Health.Status}}' "$server")
done
[ "$health" = healthy ] || fail "Docker reports the container $health"
info "Docker HEALTHCHECK: $health"

# ---------------------------------------------------------------------------------
step "PostgreSQL restart under write load"
python -m tests.image.db_restart --api "http://127.0.0.1:$APP_PORT/api" \
  --database-url "$database_url" \
  --stop "runuser -u postgres -- ${pg_stop[*]}" --start "runuser -u postgres -- ${pg_start[*]}"
[ "$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$server")" = "0 true" ] \
  || fail "the server container was restarted"
info "same container throughout (no restart)"

step "Graceful stop of the server container"
docker stop --time 40 "$server" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$server")
[ "$code" = 0 ] || { docker logs "$server" 2>&1 | tail -n 20 >&2; fail "the server exited $code"; }
info "exit code 0"
docker rm "$server" >/dev/null

# ---------------------------------------------------------------------------------
step "Push to a local registry and pull back by the version tag"
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  secret: $(python3 -c 'import secrets; print(secrets.token_hex(16))')
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry_pid=$!
wait_for_status "http://127.0.0.1:$REGISTRY_PORT/v2/" 200 15 || {
  cat "$work/registry/log" >&2
  fail "the registry did not start"
}
remote="127.0.0.1:$REGISTRY_PORT/$IMAGE_NAME:$version"
docker tag "$image" "$remote"
docker push "$remote" >"$work/push.log" || { cat "$work/push.log" >&2; fail "push failed"; }
info "pushed $remote ($(grep -o 'digest: sha256:[0-9a-f]*' "$work/push.log"))"
# Remove every local name of the image, so the pull has to fetch it.
docker rmi "$remote" "$image" >/dev/null
docker image inspect "$image_id" >/dev/null 2>&1 && fail "the image is still present locally"
docker pull "$remote" >"$work/pull.log" || { cat "$work/pull.log" >&2; fail "pull failed"; }
pulled=$remote
[ "$(docker image inspect -f '{{.Id}}' "$remote")" = "$image_id" ] \
  || fail "the pulled image differs from the one built"
docker tag "$remote" "$image"  # the developer keeps the built image under its name
info "pulled $remote: same image id ${image_id:7:12}"

# ---------------------------------------------------------------------------------
step "SIGTERM during a request: it completes, the container exits 0 (pulled image)"
# A large bcrypt cost makes registration take seconds: a slow request of the real API.
server=$(run_container -d --name "conduit-sigterm-$APP_PORT" -e PORT="$APP_PORT" \
  -e BCRYPT_LOG_ROUNDS=16 "$remote")
wait_for_status "http://127.0.0.1:$APP_PORT/readyz" 200 60 || fail "the pulled image did not get ready"
name="sigterm$(date +%s%N)"
curl -s -m 60 -o "$work/slow.json" -w '%{http_code} %{time_total}\n' \
  -H 'Content-Type: application/json' \
  -d "{\"user\": {\"username\": \"$name\", \"email\": \"$name@example.com\", \"password\": \"password\"}}" \
  "http://127.0.0.1:$APP_PORT/api/users" >"$work/slow.status" &
client=$!
sleep 1
sent_term=$(now)
docker kill --signal TERM "$server" >/dev/null
code=$(docker wait "$server")
stopped_after=$(elapsed "$sent_term")
wait "$client" || fail "the request in flight got no answer"
read -r status seconds <"$work/slow.status"
[ "$status" = 201 ] || fail "the request in flight answered $status: $(cat "$work/slow.json")"
python -c 'import json, sys; assert json.load(open(sys.argv[1]))["user"]["username"] == sys.argv[2]' \
  "$work/slow.json" "$name" || fail "the request in flight returned no user"
awk -v s="$seconds" 'BEGIN { exit !(s > 1.5) }' || fail "the request took ${seconds}s: it was not in flight at SIGTERM"
[ "$code" = 0 ] || { docker logs "$server" 2>&1 | tail -n 20 >&2; fail "the container exited $code"; }
[ "$(psql_app -c "SELECT count(*) FROM users WHERE username = '$name'")" = 1 ] \
  || fail "the registered user is not in the database"
info "request took ${seconds} s and answered 201; container exited 0, ${stopped_after} s after SIGTERM"
docker logs "$server" 2>&1 | grep -E 'graceful shutdown|goodbye' | sed 's/^/    uwsgi: /'

# ---------------------------------------------------------------------------------
echo
echo "==> Measurements"
mkdir -p reports
{
  echo "image $image (base $BASE_IMAGE), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '%s\n' "${metrics[@]}"
} | tee reports/image-metrics.txt | sed 's/^/    /'
