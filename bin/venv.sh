# Sourced by bin/invoke and bin/test: make .venv with the pinned requirements, once per change.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "setting up $VENV (Python 3.11, pinned requirements)..." >&2
    python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-test.txt"
    echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# A Docker Engine that answers, debootstrap, and the local base image (each only when missing).
build_host() {
    "$ROOT/provision/host/engine.sh"
    missing=""
    command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
    command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"  # publish tests
    command -v htpasswd >/dev/null 2>&1 || missing="$missing apache2-utils"
    command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"  # deploy tests
    command -v cloud-init >/dev/null 2>&1 || missing="$missing cloud-init"  # `cloud-init schema` only
    command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"  # fleet tests: the balancer
    command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"  # fleet tests: the scrape
    command -v podman >/dev/null 2>&1 || missing="$missing podman"  # k8s tests: the stand-in node
    command -v catatonit >/dev/null 2>&1 || missing="$missing catatonit"  # its pods' pause process
    dpkg -s netavark >/dev/null 2>&1 || missing="$missing netavark"  # its network stack
    if [ -n "$missing" ]; then
        # cloud-init is for `cloud-init schema` only: disabled before it is installed, so its services
        # never run on this host, and installed without recommends; haproxy's and prometheus's services are
        # kept from starting while installing (policy-rc.d), the tests start their own
        mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled
        policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
        fi
        # shellcheck disable=SC2086  # a list of package names
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
        [ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
    fi
    "$VENV/bin/invoke" --search-root "$ROOT" base --plain >/dev/null
}
