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
    if [ -n "$missing" ]; then
        # cloud-init is for `cloud-init schema` only: disabled before it is installed, so its services
        # never run on this host, and installed without recommends
        mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled
        # shellcheck disable=SC2086  # a list of package names
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
    "$VENV/bin/invoke" --search-root "$ROOT" base --plain >/dev/null
}
