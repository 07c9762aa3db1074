#!/usr/bin/env bash
# Start to warm on a GPU host in host mode, and the files of the packages that serving reads
# (docs/cold-start.md). Two steps, run one after the other on the same host; each writes into OUT.
#
#   bench/h200_coldstart.sh trace  OUT COMFYUI MODELS WORK COMMIT
#       access times reset (bench/opened_files.py mark), then the baseline (start, warm-up, served
#       prompts, smoke's workflow checks), a snapshot of what it read, the compile levers, a second
#       snapshot, then the import timer, the page cache dropped and --disable-api-nodes
#   bench/h200_coldstart.sh levers OUT COMFYUI MODELS WORK COMMIT
#       the warm-up levers and group 2, then the prune list applied (files unread above moved away)
#       and the baseline again with smoke's workflow checks, then the smoke suite's GPU checks
#
# The access-time record lives in WORK between the steps; each step copies it to OUT.
set -uo pipefail
if [ $# -ne 6 ]; then
  echo "usage: bench/h200_coldstart.sh trace|levers OUT COMFYUI MODELS WORK COMMIT" >&2
  exit 2
fi
step=$1 out=$2 comfy=$3 models=$4 work=$5 commit=$6
mkdir -p "$out"
record="$work/opened-files.json"
mkdir -p "$work"

cs() {
  local name=$1
  shift
  python3 bench/coldstart.py --comfyui "$comfy" --models "$models" --work "$work" --stack cuda13 \
    --source-commit "$commit" --json "$out/$name.json" "$@"
}
of() { python3 bench/opened_files.py "$@" --record "$record"; }

case $step in
  trace)
    of mark --module torch --module triton --module nvidia --module comfy_kitchen --module comfy_aimdo \
      --module av || exit 2
    cs cs-baseline --only baseline --budget-s 220
    of report --label "start, warm-up, 4 served prompts, smoke's workflow checks"
    cs cs-compile --group 3 --budget-s 260
    of report --label "then torch.compile with a fresh and with a kept cache"
    cs cs-g1a --only importtime --only baseline-cold --only no-api-nodes --budget-s 200
    ;;
  levers)
    cs cs-g1b --only warmup-once --only warmup-1step --budget-s 150
    cs cs-g2 --group 2 --budget-s 330
    of prune --stack cuda13 --move-to "$work/pruned"
    cs cs-pruned --group 4 --budget-s 120
    python3 bench/gpu_expects.py "$work/expect" cuda13 >/dev/null
    OUT="$out" EXPECT="$work/expect/expect-h200-cuda13.json" JSON_NAME=gpu-smoke-pruned.json bench/gpu_checks.sh
    ;;
  *)
    echo "h200_coldstart.sh: step '$step' is neither trace nor levers" >&2
    exit 2
    ;;
esac
cp "$record" "$out/opened-files.json"
