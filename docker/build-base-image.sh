#!/usr/bin/env bash
# Builds a minimal Debian image (bookworm unless DEBIAN_SUITE says otherwise) with
# Python 3 from the Debian archive, for machines that can reach a Debian mirror but no
# container registry (the project's CI).
# The Dockerfile takes it as `--build-arg BASE_IMAGE=conduit-base:bookworm`; everywhere
# else the official python image is the base. The image tier (tests/image/conftest.py)
# runs it when the base is missing, so it is built once per machine.
#
#   docker/build-base-image.sh [TAG]     default TAG: conduit-base:$DEBIAN_SUITE
#   DEBIAN_SUITE=trixie docker/build-base-image.sh   # Debian 13 (the new-user tier's too)
#
# An image already present under TAG is reused; REBUILD=1 builds it again.
# Needs root, debootstrap and a running Docker engine. The Debian mirror is the one
# this machine's apt uses, unless DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR say otherwise.
set -euo pipefail

suite=${DEBIAN_SUITE:-bookworm}
tag=${1:-conduit-base:$suite}
ca_bundle=/etc/ssl/certs/ca-certificates.crt

log() { echo "build-base-image: $*"; }
die() { echo "build-base-image: $*" >&2; exit 1; }

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  log "reusing $tag ($(docker image inspect -f '{{.Created}}' "$tag"))"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || die "the Docker engine is not running (.ci/start-dockerd.sh)"

# The URI apt uses for a suite, from deb822 sources (*.sources) or one-line
# sources.list entries; empty when none lists it.
apt_mirror_for() {
  local wanted=$1 file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk -v want="$wanted" 'BEGIN { RS = ""; FS = "\n" }
      {
        uri = ""; hit = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, f, /[ \t]+/); uri = f[2] }
          if ($i ~ /^Suites:/) { n = split($i, f, /[ \t]+/); for (j = 2; j <= n; j++) if (f[j] == want) hit = 1 }
        }
        if (hit && uri != "") { print uri; exit }
      }' "$file"
  done | head -n1
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk -v want="$wanted" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i !~ /^\[/ && $(i + 1) == want) { print $i; exit } }' "$file"
  done | head -n1
}

mirror=${DEBIAN_MIRROR:-$(apt_mirror_for "$suite" | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-$(apt_mirror_for "$suite-security" | head -n1)}
security_mirror=${security_mirror:-http://deb.debian.org/debian-security}

rootfs=$(mktemp -d /var/tmp/conduit-base.XXXXXX)
chmod 755 "$rootfs"  # apt's unprivileged _apt user downloads into it
# Nothing is ever mounted under $rootfs, so removing it cannot reach the host.
trap 'rm -rf --one-file-system "$rootfs"' EXIT

log "debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --components=main \
  --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 30 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  die "debootstrap failed"
}
rm -f "$rootfs.log"

cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -f "$rootfs/etc/apt/sources.list"

# Packages installed later (the Dockerfile's build stage) leave out documentation,
# as in Debian's official images.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF

# apt keeps no downloaded packages or package caches in image layers (as in Debian's
# official images: every `apt-get install` in a Dockerfile cleans up after itself).
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF

# HTTPS from inside the image (pip reaching PyPI) goes through the same TLS-inspecting
# proxy as the host, so the image trusts what the host trusts. Regenerating the bundle
# in the image (update-ca-certificates) would drop the proxy's CA again.
cp "$ca_bundle" "$rootfs$ca_bundle"

log "applying $suite-updates and $suite-security"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -qq
in_root apt-get -y -qq -o Dpkg::Use-Pty=0 upgrade >/dev/null
in_root apt-get clean
cp "$ca_bundle" "$rootfs$ca_bundle"  # an upgraded ca-certificates rewrites it
# Docker provides resolv.conf and hostname to each container.
rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/tmp/* "$rootfs"/root/.cache
# Message translations: 30 MB that a server logging in English never reads.
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

python_version=$(in_root python3 -c 'import platform; print(platform.python_version())')
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "importing as $tag (Python $python_version)"
tar -C "$rootfs" --numeric-owner -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --change "LABEL org.opencontainers.image.title=\"Debian $suite with Python $python_version\"" \
  --change "LABEL org.opencontainers.image.created=\"$created\"" \
  --change "LABEL org.opencontainers.image.base.name=\"debian:$suite (debootstrap from $mirror)\"" \
  --message "debootstrap --variant=minbase $suite + python3 python3-venv ca-certificates" \
  - "$tag" >/dev/null
log "built $tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
