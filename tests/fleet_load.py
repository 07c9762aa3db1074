"""A bounded load on one ComfyUI endpoint, as a careful client runs it: `count` prompts, `concurrency` at a
time, each followed to its end through the same endpoint. Follow-ups carry the kiln_server cookie the balancer
set on the prompt's answer (a plain ComfyUI server sets none, and then nothing is sent). A prompt ends
completed (every output image fetched through /view and read as a PNG) or failed with the reason the
system gave: an HTTP error, ComfyUI's error status, or a prompt its server no longer lists in /queue nor in
/history (its server restarted). A prompt that ends neither way within `deadline_s` is counted as hung: a
silently lost prompt. Stdlib only; loopback use, bounded in count and time."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Outcome:
    index: int
    state: str                 # completed, failed, hung
    server: str = ""           # the balancer's X-Kiln-Server for the prompt ("" without a balancer)
    reason: str = ""
    prompt_id: str = ""
    images: int = 0
    seconds: float = 0.0
    queued_at: float = 0.0     # monotonic time of the POST's answer


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def state(self, name: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == name]

    def per_second(self) -> float:
        return len(self.state("completed")) / self.seconds if self.seconds else 0.0


def _call(url: str, cookie: str, body: dict | None = None, timeout: float = 10.0):
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout) as resp:
        return resp.read(), {k.lower(): v for k, v in resp.headers.items()}


def run_prompt(base: str, index: int, workflow: dict, deadline_s: float, poll_s: float = 0.05) -> Outcome:
    outcome = Outcome(index, "failed")
    started = time.monotonic()
    try:
        raw, headers = _call(base + "/prompt", "", {"prompt": workflow, "client_id": f"load-{index}"})
    except (OSError, http.client.HTTPException) as exc:   # URLError and HTTPError are OSErrors
        outcome.reason = f"POST /prompt: {exc!r}"
        return outcome
    outcome.queued_at = time.monotonic()
    outcome.prompt_id = json.loads(raw)["prompt_id"]
    outcome.server = headers.get("x-kiln-server", "")
    cookie = headers.get("set-cookie", "").split(";", 1)[0]
    try:
        _follow(base, outcome, cookie, started + deadline_s, poll_s)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        outcome.state, outcome.reason = "failed", f"follow-up: {exc!r}"
    outcome.seconds = time.monotonic() - started
    return outcome


def _follow(base: str, outcome: Outcome, cookie: str, deadline: float, poll_s: float) -> None:
    pid = outcome.prompt_id
    while time.monotonic() < deadline:
        entry = json.loads(_call(f"{base}/history/{pid}", cookie)[0]).get(pid)
        if entry is None:
            queue = json.loads(_call(base + "/queue", cookie)[0])
            if any(item[1] == pid for item in queue["queue_running"] + queue["queue_pending"]):
                time.sleep(poll_s)
                continue
            entry = json.loads(_call(f"{base}/history/{pid}", cookie)[0]).get(pid)
            if entry is None:
                outcome.reason = "lost: its server lists it neither in /queue nor in /history"
                return
        status = entry.get("status") or {}
        if status.get("status_str") != "success":
            outcome.reason = f"ComfyUI status {status.get('status_str')!r}"
            return
        for node in entry.get("outputs", {}).values():
            for image in node.get("images", []):
                query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
                png = _call(f"{base}/view?{query}", cookie)[0]
                if png[:8] != b"\x89PNG\r\n\x1a\n":
                    outcome.reason = f"/view gave no PNG for {image['filename']}"
                    return
                outcome.images += 1
        outcome.state = "completed" if outcome.images else "failed"
        outcome.reason = "" if outcome.images else "no output image"
        return
    outcome.state, outcome.reason = "hung", f"neither finished nor failed within the deadline"


def run_load(base: str, workflow: Callable[[int], dict], count: int, concurrency: int, deadline_s: float,
             on_done: Callable[[Outcome], None] = lambda o: None) -> Load:
    load = Load()
    started = time.monotonic()

    def one(i: int) -> Outcome:
        outcome = run_prompt(base, i, workflow(i), deadline_s)
        on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        load.outcomes = list(pool.map(one, range(count)))
    load.seconds = time.monotonic() - started
    return load
