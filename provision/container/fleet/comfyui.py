"""The parts of ComfyUI's HTTP API the exporter, the agent and the drain read: the queue length (GET
/prompt, the small answer; /queue would copy every queued workflow), the newest finished prompts
(/history?max_items=N) and the devices (/system_stats)."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from serve.prompt import http_json


def queue_length(url: str, timeout: float = 2.0) -> int:
    """Prompts queued or running: ComfyUI's exec_info.queue_remaining."""
    return int(http_json(url + "/prompt", timeout=timeout)["exec_info"]["queue_remaining"])


def newest(url: str, count: int, timeout: float = 5.0) -> List[Tuple[str, Dict[str, Any]]]:
    """The last `count` finished prompts, oldest first, as (prompt id, /history entry)."""
    return list(http_json(f"{url}/history?max_items={count}", timeout=timeout).items())


def devices(url: str, timeout: float = 2.0) -> List[Dict[str, Any]]:
    return list(http_json(url + "/system_stats", timeout=timeout).get("devices") or [])


def timings(entry: Dict[str, Any]) -> Tuple[str, float, float]:
    """(outcome, execution seconds, queued-to-finished seconds) of a finished prompt, from ComfyUI's own status
    messages (millisecond timestamps) and, where ComfyUI records it (0.3.74 and later), the prompt's
    create_time; a time it cannot tell is -1."""
    status = entry.get("status") or {}
    stamps = {kind: data.get("timestamp") for kind, data in status.get("messages") or []
              if isinstance(data, dict) and isinstance(data.get("timestamp"), (int, float))}
    end = next((stamps[k] for k in ("execution_success", "execution_error", "execution_interrupted") if k in stamps), None)
    start = stamps.get("execution_start")
    prompt = entry.get("prompt") or []
    extra = prompt[3] if len(prompt) > 3 and isinstance(prompt[3], dict) else {}
    created = extra.get("create_time")
    execution = (end - start) / 1000 if end is not None and start is not None else -1.0
    latency = (end - created) / 1000 if end is not None and isinstance(created, (int, float)) else -1.0
    return ("completed" if status.get("status_str") == "success" else "failed"), execution, latency
