#!/usr/bin/env bash
# Starts the Docker engine when none answers: for machines without systemd (CI runners,
# containers), where installing docker.io does not start the daemon. Safe to run again:
# an engine that already answers `docker info` is left alone.
#
#   DOCKERD_LOG   where dockerd writes its log (default /var/log/dockerd.log)
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/dockerd.log}
pidfile=/var/run/docker.pid
attempts=3

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

alive_dockerd() { # PID: a dockerd process that has not exited (zombies have)
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

# Wait up to 60 s for the engine to answer; fail early if the dockerd PID exits.
wait_for_engine() {
  local pid=$1
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    alive_dockerd "$pid" || return 1
    sleep 1
  done
  return 1
}

for attempt in $(seq 1 "$attempts"); do
  # A dockerd still starting keeps its pid file: wait for it rather than start another.
  # One killed uncleanly leaves the file behind, and a new dockerd refuses to start
  # while it exists.
  if [ -f "$pidfile" ] && alive_dockerd "$(cat "$pidfile")"; then
    pid=$(cat "$pidfile")
    echo "start-dockerd: dockerd (pid $pid) is running but not answering yet; waiting"
  else
    rm -f "$pidfile"
    echo "start-dockerd: starting dockerd (log: $log)"
    # setsid: the daemon outlives this script and the shell that ran it.
    setsid dockerd >>"$log" 2>&1 </dev/null &
    pid=$!
  fi
  if wait_for_engine "$pid"; then
    docker version --format 'start-dockerd: engine {{.Server.Version}} is up'
    exit 0
  fi
  # After an unclean stop the managed containerd can miss dockerd's start-up
  # deadline once; a second start finds it ready.
  echo "start-dockerd: attempt $attempt/$attempts failed: $(grep -v '^time=' "$log" | tail -n1)" >&2
done
echo "start-dockerd: the Docker engine did not start; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
