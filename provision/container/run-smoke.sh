#!/bin/sh
# Inside an image: start ComfyUI in the background, wait until it answers, run the smoke payload
# against it, then print the JSON report after a marker line. Exit code: the payload's.
# Arguments are passed to the payload (e.g. --require-gpu).
# The warm-up may serve without the workflow's models here: the workflow checks judge them themselves
# (skip, or fail with --require-models). The checks start once the warm-up is done, so that its prompts
# never run beside theirs (the first timed prompt is the first a user would send).
set -u
PY=/opt/venv/bin/python
PORT=$("$PY" -c 'import json; print(json.load(open("/opt/kiln/kiln.json"))["launch"]["port"])')
CACHE=$("$PY" -c 'import json; print(json.load(open("/opt/kiln/kiln.json"))["cache_mount"])')
URL="http://127.0.0.1:$PORT"

KILN_SERVE_WITHOUT_MODELS=1 /opt/kiln/start.sh >/tmp/comfyui.log 2>&1 &
server=$!
"$PY" - "$URL" "${KILN_SERVER_WAIT_S:-120}" "${KILN_WARMUP_WAIT_S:-600}" <<'PYEOF'
import os, sys, time, urllib.request
url, limit, warmup_limit = sys.argv[1] + "/system_stats", float(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit(1)
deadline = time.monotonic() + warmup_limit
while time.monotonic() < deadline and not any(os.path.exists(p) for p in ("/tmp/kiln/ready", "/tmp/kiln/failed")):
    time.sleep(0.25)
sys.exit(0 if any(os.path.exists(p) for p in ("/tmp/kiln/ready", "/tmp/kiln/failed")) else 3)
PYEOF
waited=$?
if [ "$waited" = 3 ]; then
    echo "kiln-smoke: the warm-up did not finish within its limit; the timed prompts may run beside it" >&2
elif [ "$waited" != 0 ]; then
    echo "kiln-smoke: ComfyUI did not answer at $URL; its last output:" >&2
    tail -n 20 /tmp/comfyui.log >&2
fi
cd /opt/kiln/payload || exit 2
"$PY" -m smoke --expect /opt/kiln/kiln.json --json /tmp/smoke.json --comfyui-url "$URL" --cache-dir "$CACHE" \
    --workflow /opt/kiln/warmup.json "$@"
rc=$?
kill "$server" 2>/dev/null
echo "@@KILN-SMOKE-JSON@@"
cat /tmp/smoke.json
exit "$rc"
