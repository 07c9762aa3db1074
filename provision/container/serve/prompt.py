"""ComfyUI's HTTP API as the warm-up and the smoke checks use it: queue a prompt, wait on /history,
say why a prompt failed. Stdlib only (it runs inside the image, outside the toolkit)."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from typing import Any, Dict, Optional

POLL_S = 0.25


def http_json(url: str, body: Optional[dict] = None, timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def with_new_seed(workflow: Dict[str, Any]) -> Dict[str, Any]:
    fresh = json.loads(json.dumps(workflow))
    for node in fresh.values():
        if "seed" in node.get("inputs", {}):
            node["inputs"]["seed"] = random.randrange(2 ** 32)
    return fresh


def submit_prompt(url: str, workflow: Dict[str, Any], client_id: str = "kiln-warmup") -> str:
    """Queue the prompt; its id, or RuntimeError with the server's refusal (node_errors)."""
    answer = http_json(url + "/prompt", {"prompt": workflow, "client_id": client_id})
    if "prompt_id" not in answer:
        raise RuntimeError(f"ComfyUI refused the prompt: {json.dumps(answer)[:300]}")
    return answer["prompt_id"]


def wait_for_prompt(url: str, prompt_id: str, started: float, limit_s: float, poll_s: float = POLL_S) -> Dict[str, Any]:
    """The prompt's /history entry once it completed; RuntimeError when it failed, TimeoutError after limit_s."""
    while time.monotonic() - started < limit_s:
        entry = http_json(f"{url}/history/{prompt_id}").get(prompt_id)
        status = (entry or {}).get("status", {})
        if status.get("completed"):
            return entry
        if status.get("status_str") == "error":
            raise RuntimeError(f"the prompt failed: {failure(status)}")
        time.sleep(poll_s)
    raise TimeoutError(f"the prompt did not finish within {limit_s:.0f} s")


def failure(status: Dict[str, Any]) -> str:
    """ComfyUI's execution error in a /history status, short: which node, and its message."""
    for kind, data in status.get("messages") or []:
        if kind == "execution_error" and isinstance(data, dict):
            return (f"{data.get('node_type', '?')} (node {data.get('node_id', '?')}): "
                    f"{str(data.get('exception_message', '')).strip()[:300]}")
    return json.dumps(status)[:300]
