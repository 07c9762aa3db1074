#!/bin/sh
# Inside an image: start ComfyUI in the background, wait until it answers, run the smoke payload
# against it, then print the JSON report after a marker line. Exit code: the payload's.
# Arguments are passed to the payload (e.g. --require-gpu).
set -u
PY=/opt/venv/bin/python
PORT=$("$PY" -c 'import json; print(json.load(open("/opt/kiln/kiln.json"))["launch"]["port"])')
CACHE=$("$PY" -c 'import json; print(json.load(open("/opt/kiln/kiln.json"))["cache_mount"])')
URL="http://127.0.0.1:$PORT"

/opt/kiln/start.sh >/tmp/comfyui.log 2>&1 &
server=$!
"$PY" - "$URL" "${KILN_SERVER_WAIT_S:-120}" <<'PYEOF'
import sys, time, urllib.request
url, limit = sys.argv[1] + "/system_stats", float(sys.argv[2])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(1)
PYEOF
waited=$?
if [ "$waited" != 0 ]; then
    echo "kiln-smoke: ComfyUI did not answer at $URL; its last output:" >&2
    tail -n 20 /tmp/comfyui.log >&2
fi
cd /opt/kiln/payload || exit 2
"$PY" -m smoke --expect /opt/kiln/kiln.json --json /tmp/smoke.json --comfyui-url "$URL" --cache-dir "$CACHE" "$@"
rc=$?
kill "$server" 2>/dev/null
echo "@@KILN-SMOKE-JSON@@"
cat /tmp/smoke.json
exit "$rc"
