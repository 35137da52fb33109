#!/usr/bin/env bash
# Starts the Docker engine when none answers: for machines without systemd (CI runners,
# containers), where installing docker.io does not start the daemon. Safe to run again:
# an engine that already answers `docker info` is left alone.
#
#   DOCKERD_LOG   where dockerd writes its log (default /var/log/dockerd.log)
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/dockerd.log}

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  echo "start-dockerd: dockerd is not installed (apt-get install docker.io)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "start-dockerd: the Docker engine is not running and starting it needs root" >&2
  exit 1
fi

# A daemon killed uncleanly leaves its pid file behind, and dockerd refuses to start
# while it names a live process; remove it only when that process is gone.
pidfile=/var/run/docker.pid
if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  rm -f "$pidfile"
fi

echo "start-dockerd: starting dockerd (log: $log)"
# setsid: the daemon outlives this script and the shell that ran it.
setsid dockerd >>"$log" 2>&1 </dev/null &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    docker version --format 'start-dockerd: engine {{.Server.Version}} is up'
    exit 0
  fi
  sleep 1
done
echo "start-dockerd: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
