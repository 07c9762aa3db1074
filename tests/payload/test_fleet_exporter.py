"""The exporter beside each server (provision/container/fleet) against the ComfyUI stand-in, as processes:
its metrics in Prometheus text format, /ready true only after the warm-up and before a drain, the agent
check's weight falling with the queue, and the drain waiting for the queue to run out."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import payload_env  # noqa: F401  (the payload on sys.path)
from fleet import agent, comfyui
from tests.standin.fleet import PAYLOAD, PROMPT, Server, server_port
from tests.waiting import until

FAILING = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "absent.safetensors"}}}


@pytest.fixture
def server(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "STANDIN_PROMPT_S": "0.3", "STANDIN_COMPILE_S": "0",
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    srv = Server(server_port(), tmp_path, env)
    srv.start()
    yield srv
    srv.stop()


def _metrics(srv: Server) -> dict[str, float]:
    """Every sample as 'name{label=value,...}' -> value."""
    text = urllib.request.urlopen(srv.metrics + "/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def _ready(srv: Server) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(srv.metrics + "/ready", timeout=5) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()


def _post(srv: Server, prompt: dict) -> None:
    request = urllib.request.Request(srv.url + "/prompt", json.dumps({"prompt": prompt}).encode(),
                                     {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError:
        pass  # refused at validation: never queued


def _agent(srv: Server) -> str:
    with socket.create_connection(("127.0.0.1", srv.port + 1100), timeout=5) as sock:
        return sock.recv(100).decode()


def test_queue_prompts_and_latency_are_exported(server):
    assert _metrics(server)["kiln_queue_length"] == 0
    for _ in range(4):
        _post(server, PROMPT)
    queued = _metrics(server)
    assert queued["kiln_queue_length"] >= 3 and queued["kiln_prompt_running"] == 1
    assert queued["kiln_queue_pending"] == queued["kiln_queue_length"] - 1
    done = until(lambda: (m := _metrics(server))["kiln_prompts_completed_total"] == 4 and m, 30, "four prompts counted")
    assert done["kiln_queue_length"] == 0 and done["kiln_prompts_failed_total"] == 0
    assert done["kiln_prompt_execution_seconds_count"] == 4
    assert 4 * 0.3 <= done["kiln_prompt_execution_seconds_sum"] < 4 * 3  # the stand-in's 0.3 s of work each
    assert done["kiln_prompt_execution_seconds_bucket{le=0.25}"] == 0
    assert done["kiln_gpu_memory_total_bytes{device=cpu,type=cpu}"] == 0  # the stand-in's cpu device
    assert done["kiln_comfyui_up"] == 1


def test_a_prompt_that_fails_in_execution_is_counted_failed(server, tmp_path):
    models = tmp_path / "models"
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    server.stop()
    (tmp_path / "paths.yaml").write_text(f"kiln:\n  base_path: {models}\n  vae: vae\n")
    server.comfyui = subprocess.Popen([sys.executable, "main.py", "--port", str(server.port),
                                       "--extra-model-paths-config", str(tmp_path / "paths.yaml")],
                                      cwd=PAYLOAD.parent.parent / "tests" / "standin" / "comfyui", env=server.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.exporter = None
    server.start_exporter()
    _post(server, {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "broken.safetensors"}}})
    until(lambda: _metrics(server)["kiln_prompts_failed_total"] == 1, 30, "the failed prompt counted")
    assert _metrics(server)["kiln_prompts_completed_total"] == 0


def test_what_finished_before_the_exporter_started_is_not_counted(server):
    _post(server, PROMPT)
    until(lambda: _metrics(server)["kiln_prompts_completed_total"] == 1, 30, "the first prompt counted")
    server.exporter.terminate()
    server.exporter.wait()
    server.start_exporter()   # a new exporter: the prompt before it is the warm-up's kind, never counted
    until(lambda: _metrics(server)["kiln_comfyui_up"] == 1, 30, "the new exporter answering")
    time.sleep(1.5)   # three of its polls
    assert _metrics(server)["kiln_prompts_completed_total"] == 0
    _post(server, PROMPT)
    _post(server, PROMPT)
    until(lambda: _metrics(server)["kiln_prompts_completed_total"] == 2, 30, "the two new prompts counted")


def test_ready_only_after_the_warmup_and_until_a_drain(server):
    assert _ready(server) == (503, "warming up")
    (server.folder / "failed").write_text("warm-up failed: models not in the cache\n")
    assert _ready(server) == (503, "warm-up failed: models not in the cache")
    assert _metrics(server)["kiln_warmup_failed"] == 1
    (server.folder / "failed").unlink()
    server.warm()
    assert until(lambda: (r := _ready(server))[0] == 200 and r, 10, "ready after the marker") == (200, "ready")
    m = _metrics(server)
    assert m["kiln_warmup_ready"] == 1 and m["kiln_warmup_seconds{phase=total}"] == 0.2
    (server.folder / "draining").write_text("draining\n")
    code, why = _ready(server)
    assert code == 503 and why.startswith("draining")
    assert _metrics(server)["kiln_draining"] == 1


def test_ready_turns_false_when_comfyui_stops_answering(server):
    server.warm()
    until(lambda: _ready(server)[0] == 200, 10, "/ready once the exporter heard from ComfyUI")
    server.comfyui.kill()
    server.comfyui.wait()
    code, why = until(lambda: (r := _ready(server))[0] == 503 and r, 15, "/ready turning 503")
    assert why.startswith("ComfyUI has not answered for")
    assert _metrics(server)["kiln_comfyui_up"] == 0


def test_the_agent_weight_falls_as_the_queue_grows_and_drains_to_zero(server):
    server.warm()
    assert _agent(server) == "100%\n"
    for _ in range(3):
        _post(server, PROMPT)
    weight = int(_agent(server).strip().rstrip("%"))
    assert weight in (agent.weight(2, 2), agent.weight(3, 2)) and weight < 25
    (server.folder / "draining").write_text("draining\n")
    assert _agent(server) == "0%\n"


def test_weights_follow_the_formula():
    assert [agent.weight(n, 2) for n in (0, 1, 3, 9, 1000)] == [100, 25, 6, 1, 1]
    assert [agent.weight(n, 1) for n in (0, 1, 3)] == [100, 50, 25]


def test_drain_waits_for_the_queue_then_returns(server):
    started = time.monotonic()
    for _ in range(10):   # 3 s of queue: the drain starts (a process) well before it runs out, however busy the host
        _post(server, PROMPT)
    result = subprocess.run([sys.executable, "-m", "fleet.drain", "--url", server.url, "--drain",
                             str(server.folder / "draining"), "--settle-s", "0.2", "--limit-s", "30"],
                            cwd=PAYLOAD, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    line = json.loads(result.stdout)["kiln_drain"]
    assert line["drained"] and line["left"] == 0 and line["most_queued"] >= 1
    assert time.monotonic() - started >= 3.0   # ten prompts of 0.3 s, one after another, ran out first
    assert comfyui.queue_length(server.url) == 0 and (server.folder / "draining").exists()
    until(lambda: _metrics(server)["kiln_prompts_completed_total"] == 10, 10, "the drained prompts counted")


def test_drain_gives_up_at_its_limit(server):
    for _ in range(8):
        _post(server, PROMPT)
    result = subprocess.run([sys.executable, "-m", "fleet.drain", "--url", server.url, "--drain",
                             str(server.folder / "draining"), "--settle-s", "0", "--limit-s", "0.5"],
                            cwd=PAYLOAD, capture_output=True, text=True, timeout=60)
    line = json.loads(result.stdout)["kiln_drain"]
    assert result.returncode == 1 and not line["drained"] and line["left"] > 0


def test_timings_read_comfyuis_own_timestamps_and_create_time():
    entry = {"status": {"status_str": "success", "messages": [
        ["execution_start", {"prompt_id": "p", "timestamp": 1000}],
        ["execution_cached", {"nodes": [], "prompt_id": "p", "timestamp": 1001}],
        ["execution_success", {"prompt_id": "p", "timestamp": 2335}]]},
        "prompt": [1, "p", {}, {"client_id": "c", "create_time": 500}, []]}
    assert comfyui.timings(entry) == ("completed", 1.335, 1.835)
    entry["prompt"][3] = {"client_id": "c"}   # ComfyUI before 0.3.74 records no create_time
    entry["status"]["status_str"] = "error"
    assert comfyui.timings(entry) == ("failed", 1.335, -1.0)


def test_an_answer_cut_off_midway_does_not_stop_the_history_watcher(monkeypatch):
    """ComfyUI dying mid-answer raises http.client.IncompleteRead (no OSError): the watcher polls on."""
    import http.client
    import threading
    from fleet import watch as watch_module
    answers = iter([http.client.IncompleteRead(b"{"), []])
    def newest(url, window):
        answer = next(answers, [])
        if isinstance(answer, Exception):
            raise answer
        return answer
    monkeypatch.setattr(watch_module.comfyui, "newest", newest)
    watcher, stop = watch_module.Watch("http://127.0.0.1:1", lambda entry: None, 8), threading.Event()
    thread = threading.Thread(target=watcher.run, args=(0.01, stop), daemon=True)
    thread.start()
    until(lambda: watcher.answered_at is not None, 10, "a poll answered after the cut-off one")
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
