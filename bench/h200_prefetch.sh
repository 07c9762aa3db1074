#!/usr/bin/env bash
# Group 7 of bench/zimage/coldstart.yaml on a GPU host in host mode: the model files read beside the start
# (serve.prefetch) with the page cache warm and cold, bytecode for the whole environment, --fast-disk, in the
# order of the lever file each round (the most wanted first, where the budget cuts a round short).
# The host lacks some of ComfyUI's packages and kiln's pydantic; they come as wheels in two folders
# (comfy-kitchen alone in the first, as it is large), each installed by its own step:
#
#   bench/h200_prefetch.sh prepare KITCHEN_WHEELS            comfy-kitchen into /tmp/site2
#   bench/h200_prefetch.sh levers WHEELS OUT FIRST REPEAT   the other wheels (and WHEELS/comfy.tgz, ComfyUI at
#                                                           the stack's commit), the full-size synthetic weights
#                                                           and env-bytecode's tree, then rounds FIRST.. of the
#                                                           levers into /tmp/w/g7.json, copied to OUT at the end
set -uo pipefail
SITE=/tmp/site SITE2=/tmp/site2 MODELS=/tmp/m WORK=/tmp/w
# COMMIT=<sha> names the tree that runs where its git metadata is older than the tree (a copied tree).
# ONLY="baseline env-bytecode" runs those levers alone (as the 2026-12-05 run never reached the last two)
read -ra names <<< "${ONLY:-baseline baseline-cold prefetch cold-prefetch cold-prefetch-1 env-bytecode fast-disk}"
LEVERS=()
for name in "${names[@]}"; do LEVERS+=(--only "$name"); done
install() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "$1"/*.whl; }

case ${1:-} in
  prepare)
    install "$2" "$SITE2" || exit 9
    ;;
  levers)
    wheels=$2 out=$3 first=$4 repeat=$5
    trap 'cp "$WORK"/g7.json "$WORK"/g7-*.log "$WORK"/pycache.json "$out"/ 2> /dev/null' EXIT
    mkdir -p "$MODELS" "$WORK"
    [ -f "$SITE/.done" ] || { install "$wheels" "$SITE" && touch "$SITE/.done"; } || exit 9
    export PYTHONPATH=$SITE:$SITE2
    [ -d /tmp/c/ComfyUI ] || { mkdir -p /tmp/c && tar xzf "$wheels/comfy.tgz" -C /tmp/c; } || exit 9
    python3 -c "import sys, os, json; sys.path.insert(0, 'bench'); import start_split as s
print(json.dumps({'bytecode': s.bytecode_coverage(), 'PYTHONDONTWRITEBYTECODE': os.environ.get('PYTHONDONTWRITEBYTECODE'),
                  'pycache_prefix': sys.pycache_prefix}))" | tee "$out/facts-round$first.json"
    # the weights (where missing) and the bytecode tree of env-bytecode, side by side, before the timed levers
    python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from zimage_latency import ensure_models
print(ensure_models(Path('$MODELS'), 'full'))" &
    writer=$!
    python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; import coldstart as c
c.pycache_prefix(Path('$WORK'), Path('/tmp/c/ComfyUI'))"
    cat "$WORK/pycache.json"; echo
    wait "$writer" || exit 9
    PYTHONUNBUFFERED=1 python3 bench/coldstart.py --comfyui /tmp/c/ComfyUI --models "$MODELS" --work "$WORK" \
      --stack cuda13 --source-commit "${COMMIT:-$(git rev-parse --short HEAD)}" --json "$WORK/g7.json" "${LEVERS[@]}" \
      --first-round "$first" --repeat "$repeat" --budget-s "${BUDGET_S:-420}" > "$WORK/g7-$first.log" 2>&1
    grep -v '^lever \|^{' "$WORK/g7-$first.log" | tail -c 4000
    ;;
  *)
    echo "usage: bench/h200_prefetch.sh prepare KITCHEN_WHEELS | levers WHEELS OUT FIRST REPEAT" >&2
    exit 2
    ;;
esac
