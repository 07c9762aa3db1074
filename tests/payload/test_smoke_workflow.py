"""The workflow group of the smoke payload without an engine: the latency verdict, the models decision, and
the prompt check against the ComfyUI stand-in (a test double, tests/standin/comfyui) on 127.0.0.1, and against a
server that answers with a PNG of the wrong size."""

from __future__ import annotations

import http.server
import json
import re
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from payload_env import ROOT, fresh_expect
from smoke import checks_workflow
from smoke.context import Context, Options
from tests.standin.serving import standin_server
from smoke.verdict import FAIL, LATENCY, PASS, SKIP, WARN, latency_budget, latency_verdict, p50, png_size

STANDIN = ROOT / "tests" / "standin" / "comfyui"
WORKFLOW = ROOT / "images" / "workflows" / "z-image-turbo.json"
MODELS = [{"folder": "diffusion_models", "file": "z_image_turbo_bf16.safetensors"},
          {"folder": "text_encoders", "file": "qwen_3_4b.safetensors"}, {"folder": "vae", "file": "ae.safetensors"}]


# ------------------------------------------------------------------ verdicts

def test_latency_over_the_budget_fails_and_within_it_passes():
    slack = LATENCY["slack"]
    assert slack > 0 and "source" in LATENCY
    over = latency_verdict(1.0 * (1 + slack) + 0.01, 1.0, has_gpu=True)
    assert over[0] == FAIL and "over the budget" in over[1]
    inside = latency_verdict(1.0 * (1 + slack) - 0.01, 1.0, has_gpu=True)
    assert inside[0] == PASS and f"+{slack:.0%} slack" in inside[1]
    assert latency_budget(2.0) == pytest.approx(2.0 * (1 + slack))


def test_latency_without_an_expectation_or_without_a_gpu_is_a_skip_with_the_reason():
    none = latency_verdict(0.8, None, has_gpu=True, profile="4090")
    assert none[0] == SKIP and "no expected latency for this image on profile 4090" in none[1] and "0.800 s" in none[1]
    cpu = latency_verdict(30.0, 1.0, has_gpu=False, gpu_reason="torch.cuda.is_available() is False")
    assert cpu[0] == SKIP and "CPU latency is not judged" in cpu[1] and "is_available" in cpu[1]
    assert latency_verdict(0.0, 1.0, has_gpu=True)[0] == FAIL


def test_p50_and_png_size():
    assert p50([3.0, 1.0, 2.0]) == 2.0 and p50([4.0, 1.0, 2.0, 3.0]) == 2.5
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 640, 384) + b"\x08\x02\x00\x00\x00"
    assert png_size(png) == (640, 384)
    assert png_size(b"GIF89a" + bytes(30)) is None and png_size(png[:20]) is None


# ------------------------------------------------------------------ context

def _ctx(tmp_path: Path, url: str | None = None, require_models: bool = False, gpu_reason: str | None = "no GPU here",
         workflow: Path | None = WORKFLOW, **profile) -> Context:
    expect = fresh_expect()
    expect.update(image="z-image-turbo", cache_mount="/cache", warmup={"models": MODELS})
    expect["profile"].update(profile)
    options = Options(expect_path="x", comfyui_url=url, cache_dir=str(tmp_path / "cache"),
                      workflow_path=str(workflow) if workflow else None, require_models=require_models)
    ctx = Context(expect, options)
    ctx._gpu_probed, ctx._gpu_reason = True, gpu_reason
    return ctx


def _safetensors(path: Path, tensors: dict) -> None:
    raw = json.dumps({k: {"dtype": "BF16", "shape": list(v), "data_offsets": [0, 0]} for k, v in tensors.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw.encode())


def _fill(models: Path) -> None:
    """Header-only files the stand-in recognises as Z-Image, its Qwen3-4B encoder and the Flux VAE."""
    _safetensors(models / "diffusion_models" / "z_image_turbo_bf16.safetensors", {"cap_embedder.1.weight": (3840, 2560)})
    _safetensors(models / "text_encoders" / "qwen_3_4b.safetensors", {"model.embed_tokens.weight": (151936, 2560)})
    _safetensors(models / "vae" / "ae.safetensors", {"decoder.conv_in.weight": (512, 16, 3, 3)})


def _sized(tmp_path: Path, side: int) -> Path:
    workflow = json.loads(WORKFLOW.read_text())
    for node in workflow.values():
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"].update(width=side, height=side)
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps(workflow))
    return path


# ------------------------------------------------------------------ models

def test_models_absent_skip_naming_models_fetch_and_fail_when_required(tmp_path):
    _fill(tmp_path / "cache" / "models")
    (tmp_path / "cache" / "models" / "vae" / "ae.safetensors").unlink()
    skipped = checks_workflow.check_models(_ctx(tmp_path))
    assert skipped.verdict == SKIP and "vae/ae.safetensors" in skipped.note
    assert "invoke models.fetch --gpu=h200 --image z-image-turbo --to CACHE" in skipped.note
    assert skipped.measured == "2/3"
    failed = checks_workflow.check_models(_ctx(tmp_path, require_models=True))
    assert failed.verdict == FAIL and "--require-models" in failed.note and "models.fetch" in failed.note
    prompt = checks_workflow.check_prompt(_ctx(tmp_path, url="http://127.0.0.1:9"))
    assert prompt.verdict == SKIP and "models not in the cache" in prompt.note


def test_models_found_in_the_cache_or_baked_into_the_image(tmp_path):
    _fill(tmp_path / "cache" / "models")
    assert checks_workflow.check_models(_ctx(tmp_path)).verdict == PASS
    baked = tmp_path / "baked"
    (tmp_path / "cache" / "models").rename(baked)
    ctx = _ctx(tmp_path)
    assert checks_workflow.check_models(ctx).verdict == SKIP
    ctx.expect["warmup"]["baked_models"] = str(baked)
    check = checks_workflow.check_models(ctx)
    assert check.verdict == PASS and str(baked) in check.note


def test_an_image_without_a_workflow_skips_the_group(tmp_path):
    (tmp_path / "empty.json").write_text("{}\n")     # what an image without a warm-up workflow carries
    empty = checks_workflow.check_models(_ctx(tmp_path, url="http://127.0.0.1:9", workflow=tmp_path / "empty.json"))
    assert empty.verdict == SKIP and "no warm-up workflow" in empty.note
    ctx = _ctx(tmp_path, url="http://127.0.0.1:9", workflow=None)
    results = [fn(ctx) for _, fn in checks_workflow.CHECKS]
    assert [c.verdict for c in results] == [SKIP, SKIP, SKIP]
    assert "no --workflow given" in results[0].note


# ------------------------------------------------------------------ prompt through a real server

@pytest.fixture
def standin(tmp_path):
    """The ComfyUI stand-in serving the cache's models/ (what the image's extra_model_paths.yaml does)."""
    with standin_server(tmp_path, f"kiln:\n  base_path: {tmp_path / 'cache' / 'models'}\n",
                        env={"STANDIN_COMPILE_S": "0.2", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}) as url:
        yield url


def test_prompt_passes_with_the_requested_png_and_records_timings(tmp_path, standin):
    _fill(tmp_path / "cache" / "models")
    ctx = _ctx(tmp_path, url=standin, workflow=_sized(tmp_path, 384))
    check = checks_workflow.check_prompt(ctx)
    assert check.verdict == PASS, check.note
    assert (check.measured, check.expected) == ("384x384", "384x384")
    timings = ctx.memo["workflow_timings"]
    assert len(timings["steady_s"]) == LATENCY["steady_runs"] and timings["first_s"] >= 0.2  # the cold "compile"
    assert f"steady p50 {timings['steady_p50_s']:.3f} s" in check.note
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert len(pngs) == 1 + LATENCY["steady_runs"] and png_size(pngs[-1].read_bytes()) == (384, 384)
    latency = checks_workflow.check_latency(ctx)
    assert latency.verdict == SKIP and latency.needs_gpu and "CPU latency is not judged" in latency.note


def test_the_rendered_workflow_sends_its_image_over_the_websocket_and_keeps_it_for_view(tmp_path, standin):
    """The z-image-turbo warm-up as kiln renders it (KilnImageOut, PNG level 0), against the stand-in's imitation
    of the node: the client that queued the prompt gets the picture as a binary frame (event 1, type 2 = PNG),
    the same bytes /view serves, and the smoke's prompt check passes on them. The node itself runs in the real
    ComfyUI in tests/slow/test_real_zimage.py."""
    import urllib.request
    import uuid
    from kiln.project import Project
    from kiln.render.context import sized_workflow
    from tests.ws_client import WebSocket
    _fill(tmp_path / "cache" / "models")
    workflow = sized_workflow(Project(ROOT).subject("h200", "z-image-turbo", "cuda13"))
    for node in workflow.values():
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"].update(width=256, height=256)
    client = uuid.uuid4().hex
    with WebSocket(standin.replace("http://", "ws://") + f"/ws?clientId={client}") as ws:
        body = json.dumps({"prompt": workflow, "client_id": client}).encode()
        urllib.request.urlopen(urllib.request.Request(standin + "/prompt", data=body,
                                                      headers={"Content-Type": "application/json"}), timeout=30)
        frame = next(m for m in iter(ws.receive_any, None) if isinstance(m, bytes))
    assert struct.unpack(">II", frame[:8]) == (1, 2) and png_size(frame[8:]) == (256, 256)
    written = sorted((tmp_path / "out").glob("warmup_*.png"))
    assert len(written) == 1 and written[0].read_bytes() == frame[8:]
    path = tmp_path / "rendered.json"
    path.write_text(json.dumps(workflow))
    check = checks_workflow.check_prompt(_ctx(tmp_path, url=standin, workflow=path))
    assert check.verdict == PASS and check.measured == "256x256" and "image warmup_" in check.note, check.note


def test_a_failing_prompt_is_a_failure_of_the_check(tmp_path, standin):
    """A DiT the loader does not recognise: ComfyUI's execution error in /history fails the prompt."""
    _fill(tmp_path / "cache" / "models")
    _safetensors(tmp_path / "cache" / "models" / "diffusion_models" / "z_image_turbo_bf16.safetensors",
                 {"cap_embedder.1.weight": (2304, 2560)})
    from smoke.runner import run_one
    check = run_one(_ctx(tmp_path, url=standin), "workflow", "prompt", checks_workflow.check_prompt)
    assert check.verdict == FAIL and "the prompt failed" in check.note and "Could not detect model type" in check.note


class _WrongSize(http.server.BaseHTTPRequestHandler):
    """Answers like ComfyUI but always saves a 64x64 image."""
    side, view_s = 64, 0.0

    def _json(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._json({"prompt_id": "p1", "number": 1, "node_errors": {}})

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/history/"):
            return self._json({"p1": {"status": {"status_str": "success", "completed": True}, "outputs": {
                "9": {"images": [{"filename": "x_00001_.png", "subfolder": "", "type": "output"}]}}}})
        sys.path.insert(0, str(STANDIN))
        import models as standin_models
        data = standin_models.png(self.side, self.side)
        time.sleep(self.view_s)   # the server's side: a slow network or a large file
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class _SlowView(_WrongSize):
    """The right size, but /view takes 0.3 s to answer."""
    side, view_s = 512, 0.3


def test_a_prompts_time_runs_until_its_image_bytes_are_in_hand(tmp_path):
    """End to end, as the latency goal counts it: the /view fetch is part of every timed prompt."""
    _fill(tmp_path / "cache" / "models")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowView)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ctx = _ctx(tmp_path, url=f"http://127.0.0.1:{server.server_port}", workflow=_sized(tmp_path, 512))
        check = checks_workflow.check_prompt(ctx)
    finally:
        server.shutdown()
    assert check.verdict == PASS, check.note
    timings = ctx.memo["workflow_timings"]
    assert timings["first_s"] >= 0.3 and min(timings["steady_s"]) >= 0.3, timings


def test_a_png_of_another_size_fails(tmp_path):
    _fill(tmp_path / "cache" / "models")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WrongSize)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check = checks_workflow.check_prompt(_ctx(tmp_path, url=f"http://127.0.0.1:{server.server_port}",
                                                  workflow=_sized(tmp_path, 512)))
    finally:
        server.shutdown()
    assert check.verdict == FAIL and (check.measured, check.expected) == ("64x64", "512x512")
    assert "x_00001_.png: 64x64, requested 512x512" in check.note


# ------------------------------------------------------------------ latency against the profile

def _timed(tmp_path, p50_s, **profile):
    ctx = _ctx(tmp_path, gpu_reason=None, **profile)
    ctx.memo["workflow_timings"] = {"first_s": 3.0, "steady_s": [p50_s] * 3, "steady_p50_s": p50_s}
    return checks_workflow.check_latency(ctx)


def test_latency_on_a_gpu_against_the_profile(tmp_path):
    source = dict(expected_latency_source="H200 runs", expected_latency_confidence="measured")
    slow = _timed(tmp_path, 1.5, expected_latency_s=1.0, **source)
    assert slow.verdict == FAIL and "over the budget" in slow.note and "measured: H200 runs" in slow.note
    fast = _timed(tmp_path, 0.9, expected_latency_s=1.0, **source)
    assert fast.verdict == PASS and fast.measured == "0.900" and fast.expected == f"<= 1 s +{LATENCY['slack']:.0%}"
    unknown = _timed(tmp_path, 0.9)
    assert unknown.verdict == SKIP and "no expected latency for this image on profile h200" in unknown.note
    estimated = _timed(tmp_path, 1.5, expected_latency_s=1.0, expected_latency_source="scaled from H200",
                       expected_latency_confidence="estimated")
    assert estimated.verdict == WARN and "over the budget" in estimated.note and "estimated" in estimated.note
    assert not unknown.needs_gpu


def test_the_latency_slack_is_the_sourced_25_percent(tmp_path):
    """thresholds.json states how the slack was set ("Set at 25% ..."); the value, and the smoke row that reads
    it, stay at what that source says: 26 % over a measured expectation fails, 24 % over passes."""
    stated = re.match(r"Set at (\d+)% ", LATENCY["source"])
    assert stated and LATENCY["slack"] == int(stated[1]) / 100 == 0.25
    source = dict(expected_latency_source="H200 runs", expected_latency_confidence="measured")
    over = _timed(tmp_path, 1.26, expected_latency_s=1.0, **source)
    assert over.verdict == FAIL and over.expected == "<= 1 s +25%" and "over the budget 1.250 s" in over.note
    within = _timed(tmp_path, 1.24, expected_latency_s=1.0, **source)
    assert within.verdict == PASS and "budget 1.250 s (+25% slack)" in within.note
