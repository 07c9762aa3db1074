#!/usr/bin/env bash
# On a GPU host: can the smoke verdicts fail? The payload runs in host mode against
#   h200      the card's real profile (three runs: the spread between them),
#   h200-2x   a profile claiming twice the card (copy, matmul, TFLOPS, ceilings doubled),
#   4090      another card's profile,
#   nogpu     the real profile with no GPU visible and --require-gpu (must fail within 15 s),
# then prints one table. Expect files come from bench/gpu_expects.py (EXPECTS, default
# bench/results/gpu); small wheels there (nvidia-ml-py, packaging) are unpacked beside the payload.
# The summary goes to stdout and $OUT/summary.txt; every JSON report and table into $OUT/runs.tgz.
#   OUT=/tmp/x bash bench/gpu_verdicts.sh
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${EXPECTS:-$root/bench/results/gpu}"
final="${OUT:?set OUT to a folder for the reports}"
out="$(mktemp -d)"
python="${PYTHON:-python3}"
deps="$(mktemp -d)"; cache="$(mktemp -d)"
trap 'rm -rf "$deps" "$cache" "$out"' EXIT
for wheel in "$dir"/wheels/*.whl; do "$python" -m zipfile -e "$wheel" "$deps"; done
export PYTHONPATH="$root/provision/container:$deps" PYTHONUNBUFFERED=1

exec > >(tee "$final/summary.txt") 2>&1
"$python" - <<'PY'
import pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
print(f"card: {pynvml.nvmlDeviceGetName(h)}, pciDeviceId {pynvml.nvmlDeviceGetPciInfo(h).pciDeviceId:#010x}, "
      f"driver {pynvml.nvmlSystemGetDriverVersion()}")
PY

run() {  # name expect [smoke args...]
    local name=$1 expect=$2; shift 2
    local start end rc
    start=$EPOCHREALTIME
    "$python" -m smoke --host --expect "$dir/expect-$expect.json" --json "$out/$name.json" \
        --cache-dir "$cache" "$@" > "$out/$name.txt" 2>&1
    rc=$?
    end=$EPOCHREALTIME
    printf '%-10s exit %s  %6.1f s  %s\n' "$name" "$rc" "$(awk "BEGIN { print $end - $start }")" \
        "$(tail -n 1 "$out/$name.txt")"
}

run h200 h200 --require-gpu
run h200-b h200 --require-gpu --only gpu,perf
run h200-c h200 --require-gpu --only gpu,perf
run h200-2x h200-2x --require-gpu --only gpu,perf
run 4090 4090 --require-gpu --only gpu,perf
CUDA_VISIBLE_DEVICES="" run nogpu h200 --require-gpu

"$python" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ("gpu.name", "perf.copy_bandwidth", "perf.matmul_bf16", "perf.matmul_fp16", "perf.attention_dit")
print(f"\n{'run':<9}" + "".join(f"{r:<30}" for r in rows))
for name in ("h200", "h200-b", "h200-c", "h200-2x", "4090", "nogpu"):
    checks = {f"{c['group']}.{c['name']}": c for c in json.loads((out / f"{name}.json").read_text())["checks"]}
    cells = [f"{checks[r]['verdict'].upper()} {str(checks[r]['measured'])[:20]}" if r in checks else "-" for r in rows]
    print(f"{name:<9}" + "".join(f"{c:<30}" for c in cells))
PY

tar -C "$out" -czf "$final/runs.tgz" .
