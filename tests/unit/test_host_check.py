"""`invoke host.check` logic on recorded readings: an H200 host as read through NVML, a 4090 host, a card
in MIG mode, a degraded PCIe link, held clocks and a lowered power limit, a host without a GPU."""

import json
import types

import pytest

from kiln.host import probe
from kiln.host.check import FAIL, PASS, SKIP, WARN, check_host, exit_code
from kiln.host.probe import read_disk
from kiln.host.readings import DiskReading, EngineReading, GpuReading, HostReading, reading_from_json
from tests.conftest import ROOT

GIB = 1 << 30
# As NVML reported the H200 this project validates on (driver 580.159.04, power-capped at 700 W).
H200 = GpuReading(index=0, name="NVIDIA H200", pci_device_id=0x233510DE, vram_bytes=143771 * (1 << 20),
                  pcie_gen=5, pcie_width=16, pcie_max_gen=5, pcie_max_width=16, persistence=True, mig=False,
                  ecc=True, sm_clock_mhz=1980, sm_max_mhz=1980, app_clock_mhz=1980, app_default_mhz=1980,
                  clock_reasons=0x4, power_limit_w=700.0, power_default_w=700.0)
RTX4090 = GpuReading(index=0, name="NVIDIA GeForce RTX 4090", pci_device_id=0x268410DE, vram_bytes=24564 * (1 << 20),
                     pcie_gen=1, pcie_width=16, pcie_max_gen=4, pcie_max_width=16, persistence=False, mig=None,
                     ecc=None, sm_clock_mhz=210, sm_max_mhz=3120, app_clock_mhz=None, app_default_mhz=None,
                     clock_reasons=0x1, power_limit_w=450.0, power_default_w=450.0)
ENGINE = EngineReading(reachable=True, runtimes=("nvidia", "runc"), default_runtime="runc", gpu_container="")
CACHE = DiskReading(path="/mnt/nvme/kiln", filesystem="ext4", device="/dev/nvme0n1p1", free_bytes=900 * 10**9,
                    on_nvme=True)


def _host(*gpus, **kw) -> HostReading:
    base = dict(driver="580.159.04", cuda_driver=13000, gpus=gpus, toolkit=("nvidia-ctk",), engine=ENGINE,
                nvme=("nvme0n1",), cache=CACHE)
    return HostReading(**{**base, **kw})


def _lines(project, gpu_profile, host, image="z-image-turbo", require_gpu=False):
    subject = project.subject(gpu_profile, image)
    return {line.item: line for line in check_host(host, subject.gpu, subject.lock.stack,
                                                   int(subject.image.weights_gb * 1e9), require_gpu)}


def test_the_h200_host_passes_its_profile(project):
    lines = _lines(project, "h200", _host(H200))
    assert {item: line.verdict for item, line in lines.items() if line.verdict != PASS} == {}
    assert "CUDA 13.0" in lines["driver"].measured


def test_the_recorded_h200_reading_gives_the_recorded_verdicts(project):
    """The reading `host.check --json` wrote on the H200 (docs/gpu-validation), judged again here."""
    recorded = json.loads((ROOT / "docs" / "gpu-validation" / "h200-host-check.json").read_text())
    lines = _lines(project, "h200", reading_from_json(recorded["reading"]))
    verdicts = {item: line.verdict for item, line in lines.items()}
    assert verdicts["gpu0 product"] == verdicts["gpu0 VRAM"] == verdicts["gpu0 PCIe"] == PASS
    assert verdicts["container toolkit"] == FAIL and verdicts["engine runtime"] == SKIP
    assert {line["item"]: line["verdict"] for line in recorded["lines"]}["gpu0 product"] == "pass"


def test_a_4090_host_on_an_idle_link_passes_but_says_persistence_is_off(project):
    lines = _lines(project, "4090", _host(RTX4090))
    assert lines["gpu0 PCIe"].verdict == PASS and "now Gen1" in lines["gpu0 PCIe"].measured
    assert lines["gpu0 persistence mode"].verdict == WARN and "nvidia-persistenced" in lines["gpu0 persistence mode"].fix
    assert lines["gpu0 product"].verdict == PASS and exit_code(list(lines.values())) == 0


def test_the_wrong_card_fails_on_product(project):
    lines = _lines(project, "4090", _host(H200))
    assert lines["gpu0 product"].verdict == FAIL


@pytest.mark.parametrize("change", [
    {"name": "NVIDIA H200 NVL", "pci_device_id": None},   # a near name: another card (PCIe, 94 GB per card)
    {"name": "NVIDIA H200 141GB", "pci_device_id": None},
    {"pci_device_id": 0x233B10DE},                        # the profile's name, another PCI device
])
def test_a_near_name_or_another_pci_device_is_not_the_profiles_card(project, change):
    line = _lines(project, "h200", _host(GpuReading(**{**H200.__dict__, **change})))["gpu0 product"]
    assert line.verdict == FAIL and "not the h200 profile's card" in line.fix, line


def test_the_profiles_name_in_another_spelling_is_its_card(project):
    line = _lines(project, "h200", _host(GpuReading(**{**H200.__dict__, "name": "nvidia  h200"})))["gpu0 product"]
    assert line.verdict == PASS


def test_too_little_vram_fails_against_the_profile_less_the_recorded_slack(project):
    """141 GB less the 7 % slack of thresholds.json: 131.1 GB is the floor, an 80 GB reading fails."""
    def vram(gib: float):
        return _lines(project, "h200", _host(GpuReading(**{**H200.__dict__, "vram_bytes": int(gib * GIB)})))["gpu0 VRAM"]
    small = vram(80)
    assert small.verdict == FAIL and small.expected == ">= 131.1 GB" and "smaller card" in small.fix
    assert vram(131.2e9 / GIB).verdict == PASS and vram(131.0e9 / GIB).verdict == FAIL


def test_a_card_in_mig_mode_warns(project):
    a100 = GpuReading(index=0, name="NVIDIA A100-SXM4-80GB", vram_bytes=81920 * (1 << 20), pcie_max_gen=4,
                      pcie_width=16, mig=True, persistence=True, power_limit_w=400.0, power_default_w=400.0)
    line = _lines(project, "a100-80", _host(a100))["gpu0 MIG mode"]
    assert line.verdict == WARN and "nvidia-smi -mig 0" in line.fix


def test_a_degraded_pcie_link_warns(project):
    degraded = GpuReading(**{**RTX4090.__dict__, "pcie_max_gen": 3, "pcie_width": 8})
    line = _lines(project, "4090", _host(degraded))["gpu0 PCIe"]
    assert line.verdict == WARN and "Gen3 x8" in line.measured and "x16 slot" in line.fix


@pytest.mark.parametrize("change, measured", [({"pcie_width": 8}, "Gen4 x8"), ({"pcie_max_gen": 3}, "Gen3 x16")])
def test_a_narrower_or_older_link_alone_warns(project, change, measured):
    line = _lines(project, "4090", _host(GpuReading(**{**RTX4090.__dict__, **change})))["gpu0 PCIe"]
    assert line.verdict == WARN and line.measured.startswith(measured), line


@pytest.mark.parametrize("change, item, fragment", [
    ({"clock_reasons": 0x2}, "gpu0 clocks", "nvidia-smi -rgc"),
    ({"app_clock_mhz": 1500}, "gpu0 clocks", "nvidia-smi -rac"),
    ({"power_limit_w": 450.0}, "gpu0 power limit", "nvidia-smi -pl"),
])
def test_held_clocks_and_a_changed_power_limit_are_reported_not_changed(project, change, item, fragment):
    line = _lines(project, "h200", _host(GpuReading(**{**H200.__dict__, **change})))[item]
    assert line.verdict == WARN and fragment in line.fix


@pytest.mark.parametrize("host, item, fragment", [
    (_host(H200, toolkit=()), "container toolkit", "apt-get install -y nvidia-container-toolkit"),
    (_host(H200, engine=EngineReading(reachable=True, runtimes=("runc",))), "engine runtime", "nvidia-ctk runtime configure"),
    (_host(H200, engine=EngineReading(reachable=True, runtimes=("nvidia",), gpu_container="could not select device driver")),
     "GPU in a container", "journalctl -u docker"),
    (_host(H200, driver="470.82.01"), "driver", "ubuntu-drivers install"),
    (_host(H200, cache=DiskReading("/c", "ext4", "/dev/nvme0n1", 10 * 10**9, True)), "cache space", "free space"),
])
def test_what_is_missing_fails_with_the_install_step(project, host, item, fragment):
    line = _lines(project, "h200", host)[item]
    assert line.verdict == FAIL and fragment in line.fix


def test_a_driver_between_floor_and_recommended_runs_by_minor_version_compatibility(project):
    line = _lines(project, "h200", _host(H200, driver="525.60.13"))["driver"]
    assert line.verdict == WARN and "minor-version compatibility" in line.fix


def test_a_driver_under_the_floor_names_forward_compatibility_too(project):
    line = _lines(project, "h200", _host(H200, driver="470.82.01"))["driver"]
    assert line.verdict == FAIL and "cuda-compat-12-1" in line.fix


def test_the_toolkit_hook_alone_counts_as_registered(project):
    host = _host(H200, toolkit=("nvidia-container-runtime-hook",), engine=EngineReading(True, ("runc",), "", ""))
    assert _lines(project, "h200", host)["engine runtime"].verdict == PASS


def test_no_clock_information_is_a_skip_not_a_pass(project):
    quiet = GpuReading(**{**H200.__dict__, "clock_reasons": None, "app_clock_mhz": None, "app_default_mhz": None})
    assert _lines(project, "h200", _host(quiet))["gpu0 clocks"].verdict == SKIP


def test_an_unreadable_gpu_fails_its_product_line(project):
    lost = GpuReading(index=0, name="unreadable through NVML (GPU is lost)")
    assert _lines(project, "h200", _host(lost))["gpu0 product"].verdict == FAIL


def test_nvme_behind_device_mapper_and_escaped_mount_points(tmp_path):
    block = tmp_path / "block"
    (block / "dm-0" / "slaves" / "nvme0n1p2").mkdir(parents=True)
    (block / "nvme0n1p2").mkdir()
    (block / "sda1").mkdir()
    assert probe._is_nvme("dm-0", block) and not probe._is_nvme("sda1", block)
    spaced = tmp_path / "with space"
    spaced.mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\n/dev/sdb1 {str(spaced).replace(' ', chr(92) + '040')} xfs rw 0 0\n")
    assert read_disk(spaced, mounts).filesystem == "xfs"


def test_probe_survives_a_lost_gpu_and_old_drivers():
    def lost(index):
        raise RuntimeError("GPU is lost")
    nvml = types.SimpleNamespace(nvmlDeviceGetHandleByIndex=lost)
    assert probe._readable_gpu(nvml, 0).name.startswith("unreadable through NVML (GPU is lost)")
    old = types.SimpleNamespace(nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x2)
    assert probe._clock_reasons(old, object()) == 0x2


def test_cdi_specs_count_as_registered(project):
    host = _host(H200, engine=EngineReading(reachable=True, runtimes=("runc",), gpu_container=""),
                 cdi_specs=("/etc/cdi/nvidia.yaml",))
    assert _lines(project, "h200", host)["engine runtime"].verdict == PASS


def test_a_host_without_a_gpu_skips_unless_required(project):
    host = HostReading(nvml_error="NVML Shared Library Not Found", engine=EngineReading(True, ("runc",)))
    lines = _lines(project, "4090", host)
    assert lines["driver"].verdict == SKIP and lines["engine runtime"].verdict == SKIP
    assert exit_code(list(lines.values())) == 0
    required = _lines(project, "4090", host, require_gpu=True)
    assert required["driver"].verdict == FAIL and exit_code(list(required.values())) == 1


def test_read_disk_finds_the_mount_and_nvme(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\n/dev/nvme0n1p1 {tmp_path} xfs rw 0 0\n")
    disk = read_disk(tmp_path / "cache" / "not-yet", mounts)
    assert (disk.device, disk.filesystem, disk.on_nvme) == ("/dev/nvme0n1p1", "xfs", True) and disk.free_bytes > 0
