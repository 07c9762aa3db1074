"""Driver view through a fake NVML module and canned nvidia-smi output."""

from __future__ import annotations

import subprocess
import types

import payload_env  # noqa: F401
from smoke import nvml


class NotSupported(Exception):
    pass


def fake_pynvml(**overrides):
    """A stand-in for the pynvml module with an H200-like device."""
    calls = []

    def unsupported(*_):
        raise NotSupported("Not Supported")

    api = dict(
        NVML_CLOCK_SM=1,
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 1,
        nvmlSystemGetDriverVersion=lambda: b"580.159.04",
        nvmlDeviceGetHandleByIndex=lambda i: f"idx{i}",
        nvmlDeviceGetHandleByUUID=lambda u: f"uuid:{u}",
        nvmlDeviceGetName=lambda h: "NVIDIA H200",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=143771 * 2 ** 20),
        nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0),
        nvmlDeviceGetCurrPcieLinkGeneration=lambda h: 1,
        nvmlDeviceGetCurrPcieLinkWidth=lambda h: 16,
        nvmlDeviceGetMaxPcieLinkGeneration=lambda h: 5,
        nvmlDeviceGetMaxPcieLinkWidth=unsupported,
        nvmlDeviceGetPciInfo=lambda h: types.SimpleNamespace(pciDeviceId=0x233510DE),
        nvmlDeviceGetClockInfo=lambda h, clock: 1470,
        nvmlDeviceGetPowerUsage=lambda h: 690_500,
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000,
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x4,
    )
    api.update(overrides)
    module = types.SimpleNamespace(**api)
    module.calls = calls
    return module


def test_read_nvml_full_view():
    mod = fake_pynvml()
    view = nvml.read_nvml(mod)
    assert view.ok and view.source == "nvml"
    assert (view.count, view.name, view.driver) == (1, "NVIDIA H200", "580.159.04")
    assert view.total_bytes == 143771 * 2 ** 20 and view.cc == (9, 0)
    assert (view.cur_gen, view.cur_width, view.max_gen) == (1, 16, 5)
    assert view.max_width is None          # NotSupported -> unknown, not a crash
    assert view.pci_device_id == 0x233510DE
    assert mod.calls == ["init", "shutdown"]


def test_read_nvml_prefers_torch_uuid():
    seen = []
    mod = fake_pynvml(nvmlDeviceGetName=lambda h: seen.append(h) or "NVIDIA H200")
    nvml.read_nvml(mod, uuid="GPU-1234")
    assert seen == ["uuid:GPU-1234"]


def test_read_nvml_init_failure_is_reported():
    def boom():
        raise RuntimeError("NVML Shared Library Not Found")
    view = nvml.read_nvml(fake_pynvml(nvmlInit=boom))
    assert not view.ok and "NVML Shared Library Not Found" in view.error


def test_read_nvml_without_module():
    view = nvml.read_nvml(None)
    assert not view.ok and view.error == "pynvml not importable"


def test_parse_smi_line():
    view = nvml.parse_smi_line("1, NVIDIA H200, 580.159.04, 143771, 5, 16, 5, 16")
    assert view.ok and view.source == "nvidia-smi"
    assert view.total_bytes == 143771 * 2 ** 20
    assert (view.cur_gen, view.cur_width, view.max_gen, view.max_width) == (5, 16, 5, 16)


def test_parse_smi_line_unknown_fields():
    view = nvml.parse_smi_line("1, NVIDIA H200, 580.159.04, 143771, [N/A], [N/A], 5, 16")
    assert view.cur_gen is None and view.cur_width is None and view.max_gen == 5
    assert not nvml.parse_smi_line("garbage").ok


def test_read_nvidia_smi_with_fake_runner(monkeypatch):
    monkeypatch.setattr(nvml.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def runner(cmd, **kwargs):
        assert cmd[1].startswith("--query-gpu=count,name,driver_version")
        return subprocess.CompletedProcess(cmd, 0, "1, NVIDIA H200, 580.159.04, 143771, 5, 16, 5, 16\n", "")
    assert nvml.read_nvidia_smi(runner).driver == "580.159.04"


def test_read_nvidia_smi_missing(monkeypatch):
    monkeypatch.setattr(nvml.shutil, "which", lambda name: None)
    view = nvml.read_nvidia_smi()
    assert not view.ok and view.error == "nvidia-smi not found"


def test_decode_throttle():
    assert nvml.decode_throttle(0x4) == ["power cap"]
    assert nvml.decode_throttle(0x44) == ["power cap", "SW thermal"]
    assert nvml.decode_throttle(0) == [] and nvml.decode_throttle(None) == []


def test_clock_state_phrase():
    assert nvml.clock_state(fake_pynvml()) == "SM 1470 MHz 690/700 W, clocks held by power cap"
    assert nvml.clock_state(None) == ""
