#!/usr/bin/env bash
# Group 7 of bench/zimage/coldstart.yaml on a GPU host in host mode: the model files read beside the start
# (serve.prefetch) with the page cache warm and cold, bytecode for the whole environment, --fast-disk.
# The host lacks some of ComfyUI's packages; they come as wheels in two folders (comfy-kitchen alone in
# the first, as it is large), each installed by its own step:
#
#   bench/h200_prefetch.sh prepare KITCHEN_WHEELS            comfy-kitchen into /tmp/site2, and the full-size
#                                                           synthetic weights written in the background
#   bench/h200_prefetch.sh levers WHEELS OUT FIRST REPEAT   the other wheels (and WHEELS/comfy.tgz, ComfyUI at
#                                                           the stack's commit), then rounds FIRST.. of the
#                                                           levers into /tmp/w/g7.json, copied to OUT
set -uo pipefail
SITE=/tmp/site SITE2=/tmp/site2 MODELS=/tmp/m WORK=/tmp/w
LEVERS=(--only baseline --only baseline-cold --only prefetch --only cold-prefetch --only cold-prefetch-1
        --only env-bytecode --only fast-disk)
install() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "$1"/*.whl; }

case ${1:-} in
  prepare)
    install "$2" "$SITE2" || exit 9
    mkdir -p "$MODELS" "$WORK"
    rm -f "$WORK/weights.done"
    # in a session of its own, so that it outlives this step's command
    setsid nohup bash -c "python3 -c \"import sys; sys.path.insert(0, 'bench'); from pathlib import Path
from zimage_latency import ensure_models; print(ensure_models(Path('$MODELS'), 'full'))\" && touch $WORK/weights.done" \
      > "$WORK/weights.log" 2>&1 < /dev/null &
    ;;
  levers)
    wheels=$2 out=$3 first=$4 repeat=$5
    [ -f "$SITE/.done" ] || { install "$wheels" "$SITE" && touch "$SITE/.done"; } || exit 9
    export PYTHONPATH=$SITE:$SITE2
    [ -d /tmp/c/ComfyUI ] || { mkdir -p /tmp/c && tar xzf "$wheels/comfy.tgz" -C /tmp/c; } || exit 9
    python3 -c "import sys, os, json; sys.path.insert(0, 'bench'); import start_split as s
print(json.dumps({'bytecode': s.bytecode_coverage(), 'PYTHONDONTWRITEBYTECODE': os.environ.get('PYTHONDONTWRITEBYTECODE'),
                  'pycache_prefix': sys.pycache_prefix}))" | tee "$out/facts-round$first.json"
    while [ ! -f "$WORK/weights.done" ]; do sleep 1; done
    cat "$WORK/weights.log"
    PYTHONUNBUFFERED=1 python3 bench/coldstart.py --comfyui /tmp/c/ComfyUI --models "$MODELS" --work "$WORK" \
      --stack cuda13 --source-commit "$(git rev-parse --short HEAD)" --json "$WORK/g7.json" "${LEVERS[@]}" \
      --shuffle 71 --first-round "$first" --repeat "$repeat" --budget-s "${BUDGET_S:-480}" > "$WORK/g7-$first.log" 2>&1
    cp "$WORK/g7.json" "$WORK/g7-$first.log" "$out/"
    grep -v '^lever \|^{' "$WORK/g7-$first.log" | tail -c 4000
    ;;
  *)
    echo "usage: bench/h200_prefetch.sh prepare KITCHEN_WHEELS | levers WHEELS OUT FIRST REPEAT" >&2
    exit 2
    ;;
esac
