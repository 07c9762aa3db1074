#!/bin/sh
# Make sure a Docker Engine answers on this host: install Debian's docker.io when it is missing,
# start dockerd in the background when nothing listens on the socket, wait until it answers.
# Works without the toolkit. Needs root for the install and the start.
set -eu

SOCKET=${DOCKER_SOCKET:-/var/run/docker.sock}
LOG=${KILN_DOCKERD_LOG:-/var/log/kiln-dockerd.log}

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if answers; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "installing Docker Engine (Debian docker.io)..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
    echo "no Docker Engine answers on $SOCKET and starting one needs root: run 'sudo dockerd &' or 'sudo systemctl start docker'" >&2
    exit 2
fi
echo "starting dockerd (log: $LOG)..." >&2
nohup dockerd --host "unix://$SOCKET" >"$LOG" 2>&1 &
tries=0
until answers; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
        echo "dockerd did not answer within 60 s; see $LOG" >&2
        exit 2
    fi
    sleep 1
done
echo "Docker Engine $(docker version --format '{{.Server.Version}}') is up" >&2
