"""The exporter beside one ComfyUI server:

    python -m fleet --url http://127.0.0.1:8188 --port 9188 --agent-port 9288 \
        --ready /tmp/kiln/ready --failed /tmp/kiln/failed --drain /tmp/kiln/draining

/metrics and /ready on --port, HAProxy's agent check on --agent-port. The image's start script runs it; on a
host without containers, run one per server with that server's URL, ports and marker files."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from lines import emit
from prometheus_client import CollectorRegistry

from . import agent, endpoints
from .metrics import Finished, Live
from .state import Markers
from .watch import Watch

CONFIG = json.loads((Path(__file__).parent / "fleet.json").read_text(encoding="utf-8"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fleet")
    p.add_argument("--url", required=True, help="ComfyUI's base URL")
    p.add_argument("--listen", default="0.0.0.0")
    p.add_argument("--port", type=int, required=True, help="/metrics and /ready")
    p.add_argument("--agent-port", type=int, required=True, help="HAProxy's agent check")
    p.add_argument("--ready", required=True, help="the warm-up's ready marker")
    p.add_argument("--failed", required=True, help="the warm-up's failure reason")
    p.add_argument("--drain", required=True, help="the marker a drain writes")
    args = p.parse_args(argv)
    url = args.url.rstrip("/")
    markers = Markers(Path(args.ready), Path(args.failed), Path(args.drain))
    exponent = float(CONFIG["weight_exponent"])

    registry = CollectorRegistry()
    finished = Finished(registry, CONFIG)
    registry.register(Live(url, markers, lambda remaining: agent.weight(remaining, exponent)))
    stop = threading.Event()
    watch = Watch(url, finished.count, CONFIG["history_window_max"])
    watcher = threading.Thread(target=watch.run, args=(CONFIG["poll_s"], stop), daemon=True)
    http = endpoints.serve(args.listen, args.port, registry,
                           lambda: endpoints.readiness(markers, watch.silent_for, CONFIG["stale_s"]))
    checks = agent.serve(args.listen, args.agent_port, lambda: agent.reply(url, markers, exponent))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watcher.start()
    for server in (http, checks):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    emit(json.dumps({"kiln_fleet": {"metrics": f"{args.listen}:{args.port}", "agent": f"{args.listen}:{args.agent_port}",
                                    "comfyui": url}}))
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    for server in (http, checks):
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
