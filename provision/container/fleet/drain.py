"""Drain before a shutdown (Kubernetes preStop, or by hand before stopping a container):

    python -m fleet.drain --url http://127.0.0.1:8188 --drain /tmp/kiln/draining --settle-s 5 --limit-s 110

1. write the drain marker: /ready answers 503 (Kubernetes takes the pod out of its Service's endpoints, the
   balancer's health check out of rotation) and the agent check answers 0 % (HAProxy stops sending new
   prompts, while the follow-ups of this server's prompts still reach it);
2. wait --settle-s for those to take effect: prompts that were already on their way still arrive;
3. wait until ComfyUI's queue is empty (the running prompt and every one queued behind it finished), at most
   --limit-s in all; then return, and the shutdown's SIGTERM stops the server.
Prints one JSON line with what it waited for. Exit 0 when the queue emptied, 1 when the limit came first or ComfyUI stopped answering."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lines import emit

from . import comfyui


def drain(url: str, marker: Path, settle_s: float, limit_s: float, poll_s: float = 0.25) -> dict:
    started = time.monotonic()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("draining\n", encoding="utf-8")
    time.sleep(min(settle_s, limit_s))
    remaining, most = -1, 0
    while True:
        try:
            remaining = comfyui.queue_length(url)
        except (OSError, ValueError, KeyError, TypeError):
            remaining = -1  # ComfyUI is gone: nothing left to wait for
        most = max(most, remaining)
        if remaining <= 0 or time.monotonic() - started >= limit_s:
            break
        time.sleep(poll_s)
    return {"drained": remaining == 0, "left": remaining if remaining >= 0 else "ComfyUI does not answer",
            "most_queued": most, "seconds": round(time.monotonic() - started, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fleet.drain")
    p.add_argument("--url", required=True)
    p.add_argument("--drain", required=True, help="the marker the exporter reads")
    p.add_argument("--settle-s", type=float, default=5.0)
    p.add_argument("--limit-s", type=float, required=True)
    args = p.parse_args(argv)
    result = drain(args.url.rstrip("/"), Path(args.drain), args.settle_s, args.limit_s)
    emit(json.dumps({"kiln_drain": result}, sort_keys=True))
    return 0 if result["drained"] else 1


if __name__ == "__main__":
    sys.exit(main())
