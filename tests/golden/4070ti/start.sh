#!/bin/sh
# Exported values are literal data, single-quoted on purpose: nothing in them may expand.
# shellcheck disable=SC2016,SC1003
# Rendered by kiln 0.1.0 for comfyui on NVIDIA GeForce RTX 4070 Ti; do not edit.
#
# tini (PID 1, -g) forwards signals to this script and ComfyUI; SIGTERM at any point (the preflight
# included) stops what runs and the container exits 0. Order: caches, then the GPU preflight and ComfyUI
# at once (each imports torch and opens the GPU: one after the other, a cold start would wait for that
# twice), with the exporter beside them (metrics and /ready on 9188, the balancer's agent check on 9288);
# the warm-up starts only after the preflight passed, and a failed preflight stops ComfyUI: the server is
# never healthy before it passed, so nothing that waits for health (the balancer, Kubernetes) sends it work.
# The healthcheck turns healthy only when the warm-up has written its marker. A failed warm-up writes
# its reason where the healthcheck reports it, and the container ends with code 3 seconds later:
# Docker does not count failed probes in the start period, so waiting for "unhealthy" would take it.
set -eu
trap 'exit 0' TERM INT

export TORCHINDUCTOR_CACHE_DIR=/cache/inductor
export TRITON_CACHE_DIR=/cache/triton
export CUDA_CACHE_PATH=/cache/cuda
export HF_HOME=/cache/hf
PY=/opt/venv/bin/python
# the warm-up reports start to warm from here
KILN_STARTED=$(date +%s.%N)
export KILN_STARTED
READY=/tmp/kiln/ready
FAILED=/tmp/kiln/failed
DRAIN=/tmp/kiln/draining
rm -f "$READY" "$FAILED" "$DRAIN"
mkdir -p "$(dirname "$READY")"

if [ -w /cache ]; then
    mkdir -p  /cache/models /cache/inductor /cache/triton /cache/cuda /cache/hf
fi
cache_fs=$(awk '$2 == "/cache" { print $3 }' /proc/mounts)
if [ -z "$cache_fs" ] || [ "$cache_fs" = tmpfs ]; then
    echo "kiln: /cache is not a mount of a disk: models and compile caches will not persist across restarts" >&2
fi

# Beside the start too: the warm-up's model files read into the page cache while Python imports (a node
# restarted with its models on disk would otherwise read them only when the warm-up reaches each loader).
(cd /opt/kiln/payload && exec nice -n 10 "$PY" -m serve.prefetch --facts /opt/kiln/kiln.json \
    --arriving /cache/models/.kiln-arriving) &
prefetch=$!

echo "kiln: phase preflight: checking the GPU while ComfyUI starts"
(cd /opt/kiln/payload && exec "$PY" -m smoke.preflight --expect /opt/kiln/kiln.json) &
preflight=$!

# The GPU profile's flags; KILN_CPU_MODE=1 swaps them for --cpu (tests on hosts without a GPU only).
if [ "${KILN_CPU_MODE:-0}" = 1 ]; then
    set -- --cpu
else
    set -- --normalvram --reserve-vram 0.5
fi

cd /opt/comfyui
echo "kiln: phase start: starting ComfyUI"
"$PY" main.py --listen 0.0.0.0 --port 8188 --extra-model-paths-config /opt/kiln/extra_model_paths.yaml "$@" --preview-method none --disable-auto-launch &
comfyui=$!
(cd /opt/kiln/payload && exec "$PY" -m fleet --url http://127.0.0.1:8188 --port 9188 \
    --agent-port 9288 --ready "$READY" --failed "$FAILED" --drain "$DRAIN") &
exporter=$!
# wait's stderr here holds only the shell's notice of how the ComfyUI it stops ended, so a failure's reason
# stays the log's last line
trap 'kill -TERM "$prefetch" "$preflight" "$comfyui" "$exporter" 2>/dev/null || true; wait "$comfyui" 2> /dev/null || true; exit 0' TERM INT
trap 'echo "kiln: $(cat "$FAILED" 2> /dev/null || echo "warm-up failed (it wrote no reason)"); stopping ComfyUI" >&2; kill -TERM "$prefetch" "$comfyui" "$exporter" 2>/dev/null || true; wait "$comfyui" 2> /dev/null || true; exit 3' USR1
if ! wait "$preflight"; then
    echo "kiln: the GPU preflight failed; stopping ComfyUI" >&2
    kill -TERM "$prefetch" "$comfyui" "$exporter" 2>/dev/null || true
    wait "$comfyui" 2> /dev/null || true
    exit 1
fi

(
    cd /opt/kiln/payload
    if ! "$PY" -m serve.warmup --facts /opt/kiln/kiln.json --url http://127.0.0.1:8188 \
            --marker "$READY" --failed "$FAILED" --arriving /cache/models/.kiln-arriving; then
        sleep 6  # three healthcheck intervals: the reason reaches the container's health log
        kill -USR1 $$
    fi
) &

wait "$comfyui"
