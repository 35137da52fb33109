#!/bin/sh
# Certificates as docker:dind makes them (ca/, server/, client/ under
# $DOCKER_TLS_CERTDIR), then TLS on 2376 forwarded to the host engine's socket.
set -eu
socket=/run/rehearsal/docker.sock
[ -S "$socket" ] || { echo "dind stand-in: no Docker socket at $socket (the rehearsal mounts it)" >&2; exit 1; }

# A container on a real dind's host network listens in the dind service's own network,
# so a job reaches it at `docker:PORT`. Here such containers run on the host's
# network: forward the port pack's proof serves on (conduit_deploy.pack.PROOF_PORT)
# to the host, reached through this container's default gateway.
forwarded_ports="8000"
hex=$(awk '$2 == "00000000" { print $3; exit }' /proc/net/route)  # little-endian hex
byte() { printf '%d' "0x$(echo "$hex" | cut -c"$1")"; }
gateway="$(byte 7-8).$(byte 5-6).$(byte 3-4).$(byte 1-2)"
for port in $forwarded_ports; do
  socat "TCP-LISTEN:$port,reuseaddr,fork" "TCP:$gateway:$port" &
done
certs=${DOCKER_TLS_CERTDIR:-}
if [ -z "$certs" ]; then
  exec socat TCP-LISTEN:2375,reuseaddr,fork "UNIX-CONNECT:$socket"
fi
mkdir -p "$certs/ca" "$certs/server" "$certs/client"
cd "$certs"
openssl genrsa -out ca/key.pem 2048 2>/dev/null
openssl req -new -x509 -days 1 -key ca/key.pem -subj /CN=docker:dind-CA -out ca/cert.pem
make_cert() { # NAME SUBJECT EXTENSIONS
  openssl genrsa -out "$1/key.pem" 2048 2>/dev/null
  openssl req -new -key "$1/key.pem" -subj "$2" -out "$1/csr.pem"
  printf '%s\n' "$3" >"$1/openssl.cnf"
  openssl x509 -req -days 1 -in "$1/csr.pem" -CA ca/cert.pem -CAkey ca/key.pem \
    -CAcreateserial -extfile "$1/openssl.cnf" -out "$1/cert.pem" 2>/dev/null
  cp ca/cert.pem "$1/ca.pem"
}
make_cert server /CN=docker:dind-server \
  "subjectAltName=DNS:docker,DNS:localhost,DNS:$(hostname),IP:127.0.0.1
extendedKeyUsage=serverAuth"
make_cert client /CN=docker:dind-client "extendedKeyUsage=clientAuth"
chmod -R a+rX "$certs/client"
echo "dind stand-in: TLS on :2376 -> host engine"
# -t: the client closes its side of an attached `docker run` at once (no stdin); socat's
# default 0.5 s before closing the other side would cut off the container's output.
exec socat -t 3600 "OPENSSL-LISTEN:2376,reuseaddr,fork,cert=$certs/server/cert.pem,key=$certs/server/key.pem,cafile=$certs/ca/cert.pem,verify=1" \
  "UNIX-CONNECT:$socket"
