"""Checks run against a fake context: stand-in modules and driver views."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import types

import pytest

from payload_env import fresh_expect
from smoke import (checks_comfyui, checks_compile, checks_gpu, checks_numerics, checks_perf,
                   checks_versions, runner)
from smoke.context import Context, Options
from smoke.deps import Deps
from smoke.nvml import DriverView
from smoke.verdict import FAIL, PASS, SKIP, WARN

NO_GPU = "no GPU in this test"
MISSING = object()


def make_deps(**modules) -> Deps:
    """Deps whose modules are given; any module not named is 'missing'."""
    deps = Deps()
    for name in ("torch", "numpy", "xformers", "xformers.ops", "pynvml", "triton"):
        module = modules.get(name.replace(".", "_"), MISSING)
        deps._mods[name] = None if module is MISSING else module
        if module is MISSING:
            deps.errors[name] = f"ModuleNotFoundError: No module named '{name}'"
    return deps


def make_ctx(driver: DriverView | None = None, host: bool = False, gpu_reason: str | None = NO_GPU,
             probe: bool = False, **modules) -> Context:
    ctx = Context(fresh_expect(), Options(expect_path="x", host=host), make_deps(**modules))
    if not probe:
        ctx._gpu_probed, ctx._gpu_reason = True, gpu_reason
    ctx._driver = driver or DriverView(error="no driver in this test")
    return ctx


def fake_torch(version="2.3.1+cu121", cuda="12.1", cudnn=8902, available=False):
    return types.SimpleNamespace(
        __version__=version,
        version=types.SimpleNamespace(cuda=cuda),
        backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: cudnn)),
        cuda=types.SimpleNamespace(is_available=lambda: available, device_count=lambda: 0),
    )


def h200_view(**fields) -> DriverView:
    base = dict(source="nvml", count=1, name="NVIDIA H200", driver="580.159.04",
                total_bytes=143771 * 2 ** 20, cc=(9, 0), cur_gen=5, cur_width=16,
                max_gen=5, max_width=16)
    base.update(fields)
    return DriverView(**base)


# ------------------------------------------------------------------ versions

def test_versions_pass_with_image_stack():
    ctx = make_ctx(torch=fake_torch(), xformers=types.SimpleNamespace(__version__="0.0.27"))
    assert checks_versions.check_torch(ctx).verdict == PASS
    assert checks_versions.check_cuda(ctx).verdict == PASS
    cudnn = checks_versions.check_cudnn(ctx)
    assert (cudnn.verdict, cudnn.measured, cudnn.expected) == (PASS, "8.9.2", "8.9.2.26")
    assert checks_versions.check_xformers(ctx).verdict == PASS


def test_versions_fail_in_image_warn_on_host():
    mods = dict(torch=fake_torch("2.11.0+cu130", "13.0", 91900),
                xformers=types.SimpleNamespace(__version__="0.0.27.post1"))
    image, host = make_ctx(**mods), make_ctx(host=True, **mods)
    for check in (checks_versions.check_torch, checks_versions.check_cuda,
                  checks_versions.check_cudnn, checks_versions.check_xformers):
        assert check(image).verdict == FAIL
        assert check(host).verdict == WARN
    assert checks_versions.check_cudnn(image).measured == "9.19.0"


def test_a_stack_without_xformers_passes_without_it_and_fails_with_it():
    def ctx(host=False, **mods):
        c = make_ctx(host=host, torch=fake_torch("2.11.0+cu130", "13.0", 91900), **mods)
        c.pins["xformers"] = "none"
        return c
    absent = checks_versions.check_xformers(ctx())
    assert (absent.verdict, absent.measured, absent.expected) == (PASS, "absent", "none")
    assert "PyTorch SDPA" in absent.note
    stray = dict(xformers=types.SimpleNamespace(__version__="0.0.35"))
    assert checks_versions.check_xformers(ctx(**stray)).verdict == FAIL
    assert checks_versions.check_xformers(ctx(host=True, **stray)).verdict == WARN


def test_versions_missing_torch_explained():
    check = checks_versions.check_torch(make_ctx())
    assert check.verdict == FAIL and "torch not importable" in check.note
    cpu_only = checks_versions.check_cuda(make_ctx(torch=fake_torch(cuda=None)))
    assert cpu_only.verdict == FAIL and "CPU-only build" in cpu_only.note


@pytest.mark.parametrize("content, verdict", [
    ('__version__ = "0.3.18"\n', PASS),
    ("__version__ = '0.3.75'\n", FAIL),
    ("# nothing here\n", FAIL),
])
def test_comfyui_version_file(tmp_path, monkeypatch, content, verdict):
    (tmp_path / "comfyui_version.py").write_text(content)
    monkeypatch.setenv("COMFYUI_DIR", str(tmp_path))
    assert checks_versions.check_comfyui(make_ctx()).verdict == verdict


def test_comfyui_version_absent_is_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYUI_DIR", str(tmp_path))
    check = checks_versions.check_comfyui(make_ctx())
    assert check.verdict == SKIP and "COMFYUI_DIR" in check.note


# ------------------------------------------------------------------ gpu (driver view only)

def test_gpu_checks_from_driver_view_when_torch_has_no_gpu():
    ctx = make_ctx(driver=h200_view())
    assert checks_gpu.check_name(ctx).verdict == PASS
    cc = checks_gpu.check_compute_capability(ctx)
    assert (cc.verdict, cc.measured) == (PASS, "9.0")
    assert "sm_90" in cc.expected
    vram = checks_gpu.check_vram(ctx)
    assert vram.verdict == PASS and vram.measured == 150.8 and vram.unit == "GB"
    assert checks_gpu.check_driver(ctx).verdict == PASS
    assert checks_gpu.check_pcie(ctx).verdict == PASS


def test_gpu_driver_between_floor_and_recommended_warns():
    check = checks_gpu.check_driver(make_ctx(driver=h200_view(driver="528.02")))
    assert check.verdict == WARN and check.measured == "528.02"


def test_gpu_x8_link_warns():
    check = checks_gpu.check_pcie(make_ctx(driver=h200_view(cur_gen=4, cur_width=8)))
    assert check.verdict == WARN
    assert check.measured == "Gen4 x8 (max Gen5 x16)" and "x8" in check.note


def test_gpu_wrong_card_and_blackwell():
    ctx = make_ctx(driver=h200_view(name="NVIDIA B200", cc=(10, 0), total_bytes=192 * 10 ** 9))
    assert checks_gpu.check_name(ctx).verdict == FAIL
    cc = checks_gpu.check_compute_capability(ctx)
    assert cc.verdict == FAIL and "no kernel image" in cc.note


def test_gpu_ada_card_passes_on_ampere_code():
    ctx = make_ctx(driver=h200_view(cc=(8, 9)))
    ctx.expect["profile"]["compute_capability"] = "8.9"
    check = checks_gpu.check_compute_capability(ctx)
    assert check.verdict == PASS and "sm_86" in check.note


def test_gpu_nothing_visible_is_gpu_skip():
    ctx = make_ctx()
    for fn in (checks_gpu.check_visible, checks_gpu.check_name, checks_gpu.check_vram,
               checks_gpu.check_driver, checks_gpu.check_pcie, checks_gpu.check_kernel):
        check = fn(ctx)
        assert check.verdict == SKIP and check.needs_gpu and check.note == NO_GPU


def test_gpu_driver_sees_card_torch_does_not_is_fail():
    ctx = make_ctx(driver=h200_view(), probe=True, torch=fake_torch(available=False))
    check = checks_gpu.check_visible(ctx)
    assert check.verdict == FAIL
    assert "driver sees 1 GPU(s) but torch cannot use them" in check.note
    assert check.measured == "torch 0, nvml 1"


def test_gpu_reason_for_cpu_only_torch():
    ctx = make_ctx(probe=True, torch=fake_torch(version="2.3.1+cpu", cuda=None))
    assert ctx.gpu_reason() == "torch 2.3.1+cpu is a CPU-only build"
    assert ctx.device == "cpu"


# ------------------------------------------------------------------ numerics / perf / compile without torch

def test_numerics_without_torch_skip_with_reason():
    ctx = make_ctx()
    for _, fn in checks_numerics.CHECKS:
        check = fn(ctx)
        assert check.verdict == SKIP and "torch not importable" in check.note
        assert not check.needs_gpu       # numerics fall back to the CPU, torch is what is missing


def test_perf_without_gpu_skip_and_keep_expectation():
    ctx = make_ctx()
    results = {name: fn(ctx) for name, fn in checks_perf.CHECKS}
    assert all(c.verdict == SKIP and c.needs_gpu for c in results.values())
    assert results["copy_bandwidth"].expected == ">= 3870 (fail < 3010)"
    assert results["matmul_bf16"].expected.startswith(">= ")


def test_copy_buffer_sizing():
    gib = 1 << 30
    assert checks_perf.copy_buffer_bytes(140 * gib) == 2 * gib
    assert checks_perf.copy_buffer_bytes(4 * gib) == gib
    assert checks_perf.copy_buffer_bytes(1000) == 1 << 20


def test_attention_flops_dit_shape():
    assert checks_perf.DIT_SHAPE == (1, 24, 4096, 128)
    assert checks_perf.attention_flops(*checks_perf.DIT_SHAPE) == 4 * 24 * 4096 ** 2 * 128


def test_compile_without_torch_skips():
    check = checks_compile.check_torch_compile(make_ctx())
    assert check.verdict == SKIP and "torch not importable" in check.note


def test_compile_cache_env(tmp_path, monkeypatch):
    for var in checks_compile.CACHE_SUBDIRS:
        monkeypatch.delenv(var, raising=False)
    env = checks_compile.apply_cache_env(str(tmp_path))
    assert env == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
                   "TRITON_CACHE_DIR": str(tmp_path / "triton")}
    assert (tmp_path / "inductor").is_dir() and (tmp_path / "triton").is_dir()
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "triton")


# ------------------------------------------------------------------ runner

def test_runner_turns_exceptions_into_failures():
    def broken(ctx):
        raise RuntimeError("CUDA error: no kernel image is available\nfor execution")
    check = runner.run_one(make_ctx(), "gpu", "kernel", broken)
    assert check.verdict == FAIL and check.group == "gpu" and check.name == "kernel"
    assert check.note == "RuntimeError: CUDA error: no kernel image is available for execution"
    assert check.seconds >= 0


def test_runner_groups_and_selection():
    assert runner.GROUPS == ("versions", "gpu", "numerics", "perf", "compile", "comfyui", "workflow")
    assert [m.GROUP for m in runner.selected_modules(("perf", "gpu"))] == ["gpu", "perf"]


# ------------------------------------------------------------------ comfyui (loopback server)

class _StatsHandler(http.server.BaseHTTPRequestHandler):
    payload: dict = {}

    def do_GET(self):  # noqa: N802
        if self.path != "/system_stats":
            self.send_error(404)
            return
        body = json.dumps(self.payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def comfy_server():
    def start(payload):
        handler = type("Handler", (_StatsHandler,), {"payload": payload})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/"
    servers = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _comfy_ctx(url):
    ctx = make_ctx()
    ctx.options.comfyui_url = url
    return ctx


def test_comfyui_answers_with_cuda(comfy_server):
    url = comfy_server({"system": {"comfyui_version": "0.3.18"},
                        "devices": [{"name": "cuda:0 NVIDIA H200 : cudaMallocAsync", "type": "cuda"}]})
    ctx = _comfy_ctx(url)
    stats = checks_comfyui.check_system_stats(ctx)
    assert (stats.verdict, stats.measured) == (PASS, "0.3.18")
    device = checks_comfyui.check_cuda_device(ctx)
    assert device.verdict == PASS and "H200" in device.note


def test_comfyui_started_with_cpu_fails_where_a_gpu_is_usable(comfy_server):
    ctx = _comfy_ctx(comfy_server({"system": {}, "devices": [{"name": "cpu", "type": "cpu"}]}))
    ctx._gpu_probed, ctx._gpu_reason = True, None  # this process can use a GPU
    assert checks_comfyui.check_system_stats(ctx).verdict == PASS
    device = checks_comfyui.check_cuda_device(ctx)
    assert device.verdict == FAIL and "--cpu" in device.note and device.measured == "cpu"


def test_comfyui_on_the_cpu_skips_where_no_gpu_is_usable(comfy_server):
    ctx = _comfy_ctx(comfy_server({"system": {}, "devices": [{"name": "cpu", "type": "cpu"}]}))
    ctx._gpu_probed, ctx._gpu_reason = True, "torch.cuda.is_available() is False"
    device = checks_comfyui.check_cuda_device(ctx)
    assert device.verdict == SKIP and "no GPU is usable" in device.note and device.needs_gpu


def test_comfyui_other_version_warns(comfy_server):
    ctx = _comfy_ctx(comfy_server({"system": {"comfyui_version": "0.3.75"}, "devices": []}))
    assert checks_comfyui.check_system_stats(ctx).verdict == WARN


def test_comfyui_not_answering_fails():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = _comfy_ctx(f"http://127.0.0.1:{port}")
    check = checks_comfyui.check_system_stats(ctx)
    assert check.verdict == FAIL and "no answer" in check.note
    assert checks_comfyui.check_cuda_device(ctx).verdict == FAIL


def test_comfyui_without_url_skips():
    for _, fn in checks_comfyui.CHECKS:
        check = fn(make_ctx())
        assert check.verdict == SKIP and check.note == "no --comfyui-url given"


def test_require_gpu_without_one_fails_the_gpu_groups_without_running_them(monkeypatch):
    """The CPU fallbacks (torch.compile above all) took minutes; with --require-gpu they are not run."""
    from smoke import runner

    ran = []
    ctx = make_ctx()
    modules = runner.selected_modules(None)
    for module in modules:
        if module.GROUP in runner.GPU_GROUPS:
            monkeypatch.setattr(module, "CHECKS", [(n, lambda c, n=n: ran.append(n)) for n, _ in module.CHECKS])
    checks = runner.run_requiring_gpu(ctx, modules)
    refused = [c for c in checks if c.group in runner.GPU_GROUPS]
    assert ran == [] and refused and all(c.verdict == "fail" and "GPU required" in c.note for c in refused)
    assert {c.group for c in checks} == set(runner.GROUPS)


def test_a_ceiling_measured_with_another_torch_is_not_used():
    """The H200 ceilings were measured with torch 2.11; the image's torch 2.3.1 is judged on the spec sheet."""
    def ctx_with(version):
        ctx = make_ctx(gpu_reason=None, torch=fake_torch(version=version, available=True))
        ctx.profile.update({"measured_matmul_tflops": 689.0, "measured_torch": "2.11"})
        return ctx

    assert checks_perf.ceiling(ctx_with("2.3.1+cu121"), "measured_matmul_tflops") == (
        None, "ceiling measured with torch 2.11, this is 2.3: judged against the spec sheet")
    assert checks_perf.ceiling(ctx_with("2.11.0+cu130"), "measured_matmul_tflops") == (689.0, "")
