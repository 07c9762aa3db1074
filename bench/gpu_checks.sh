#!/usr/bin/env bash
# Run the in-container GPU smoke checks directly on a GPU host, in host mode
# (version mismatches against the image pins only warn), against the H200
# expect file, and print the table. When OUT is set, the JSON report is
# written to $OUT/h200.json as well.
#
#   bench/gpu_checks.sh [extra smoke arguments, e.g. --only gpu,perf]
#
# Environment: EXPECT (expect file), PYTHON (interpreter, default python3),
# JSON_NAME (report file name under $OUT, default h200.json).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
expect="${EXPECT:-$root/docs/gpu-validation/h200-expect.json}"
python="${PYTHON:-python3}"

cache="$(mktemp -d "${TMPDIR:-/tmp}/smoke-cache.XXXXXX")" || exit 2
trap 'rm -rf "$cache"' EXIT

args=(--expect "$expect" --host --require-gpu --cache-dir "$cache")
if [[ -n "${OUT:-}" ]]; then
  args+=(--json "$OUT/${JSON_NAME:-h200.json}")
fi

export PYTHONPATH="$root/provision/container${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$python" -m smoke "${args[@]}" "$@"
