#!/bin/sh
# The registry first (dockerd may pull from it as soon as it answers), then the engine.
set -eu
cat >/etc/docker-registry.yml <<'YAML'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YAML
docker-registry serve /etc/docker-registry.yml >/var/log/registry.log 2>&1 &
exec dockerd --host unix:///var/run/docker.sock >/var/log/dockerd.log 2>&1
