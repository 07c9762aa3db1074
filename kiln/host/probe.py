"""Reading this host for `invoke host.check`, read-only: NVML (through pynvml) for the driver and every
GPU, the container toolkit's programs and CDI specs, the engine (`docker info` and a one-shot container
asking for the GPUs), and the disks. Nothing here changes a clock, a limit or a mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

from kiln.host.readings import DiskReading, EngineReading, GpuReading, HostReading

TOOLKIT_PROGRAMS = ("nvidia-ctk", "nvidia-container-cli", "nvidia-container-runtime", "nvidia-container-runtime-hook")
DAEMON_JSON = Path("/etc/docker/daemon.json")
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))


def read_host(cache: Path | None, engine: Callable[[], EngineReading | None]) -> HostReading:
    nvml = _nvml()
    return HostReading(
        driver=nvml.get("driver"), nvml_error=nvml.get("error", ""), cuda_driver=nvml.get("cuda"),
        gpus=tuple(nvml.get("gpus", ())), toolkit=tuple(p for p in TOOLKIT_PROGRAMS if shutil.which(p)),
        cdi_specs=tuple(str(p) for d in CDI_DIRS if d.is_dir() for p in sorted(d.glob("*.[jy]*"))),
        daemon_runtimes=daemon_runtimes(),
        engine=engine(), nvme=nvme_disks(), cache=read_disk(cache) if cache else None)


def _nvml() -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # the pynvml shim warns; nvidia-ml-py provides the same module
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml
        pynvml.nvmlInit()
    except Exception as exc:  # no library, no driver: a build host
        return {"error": str(exc).strip() or type(exc).__name__}
    try:
        return {"driver": _text(pynvml.nvmlSystemGetDriverVersion()),
                "cuda": _safe(pynvml.nvmlSystemGetCudaDriverVersion),
                "gpus": [_readable_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]}
    finally:
        _safe(pynvml.nvmlShutdown)


def _readable_gpu(nvml: Any, index: int) -> GpuReading:
    """A GPU NVML cannot read (lost, fallen off the bus) is a reading too: its product line fails."""
    try:
        return _gpu(nvml, index)
    except Exception as exc:
        return GpuReading(index=index, name=f"unreadable through NVML ({str(exc).strip() or type(exc).__name__})")


def _gpu(nvml: Any, index: int) -> GpuReading:
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    pci = _safe(nvml.nvmlDeviceGetPciInfo, h)
    memory = _safe(nvml.nvmlDeviceGetMemoryInfo, h)
    mig = _safe(nvml.nvmlDeviceGetMigMode, h)
    ecc = _safe(nvml.nvmlDeviceGetEccMode, h)
    # the limit set with -pl, not the enforced one (which also carries platform and system caps)
    power, default = _safe(nvml.nvmlDeviceGetPowerManagementLimit, h), _safe(nvml.nvmlDeviceGetPowerManagementDefaultLimit, h)
    return GpuReading(
        index=index, name=_text(nvml.nvmlDeviceGetName(h)), pci_device_id=pci.pciDeviceId if pci else None,
        vram_bytes=memory.total if memory else None,
        pcie_gen=_safe(nvml.nvmlDeviceGetCurrPcieLinkGeneration, h),
        pcie_width=_safe(nvml.nvmlDeviceGetCurrPcieLinkWidth, h),
        pcie_max_gen=_safe(nvml.nvmlDeviceGetMaxPcieLinkGeneration, h),
        pcie_max_width=_safe(nvml.nvmlDeviceGetMaxPcieLinkWidth, h),
        persistence=_on(_safe(nvml.nvmlDeviceGetPersistenceMode, h)),
        mig=_on(mig[0]) if mig else None, ecc=_on(ecc[0]) if ecc else None,
        sm_clock_mhz=_safe(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM),
        sm_max_mhz=_safe(nvml.nvmlDeviceGetMaxClockInfo, h, nvml.NVML_CLOCK_SM),
        app_clock_mhz=_safe(nvml.nvmlDeviceGetApplicationsClock, h, nvml.NVML_CLOCK_SM),
        app_default_mhz=_safe(nvml.nvmlDeviceGetDefaultApplicationsClock, h, nvml.NVML_CLOCK_SM),
        clock_reasons=_clock_reasons(nvml, h),
        power_limit_w=power / 1000 if power else None, power_default_w=default / 1000 if default else None)


def _clock_reasons(nvml: Any, handle: Any) -> int | None:
    """Newer drivers name it 'event reasons'; the stack's floor (525/530) has only 'throttle reasons'."""
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        value = _safe(getattr(nvml, name, None), handle) if hasattr(nvml, name) else None
        if value is not None:
            return value
    return None


def _safe(fn: Callable, *args) -> Any:
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported and friends: the value is unknown, not an error
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _on(value: Any) -> bool | None:
    return None if value is None else bool(value)


def daemon_runtimes(path: Path = DAEMON_JSON) -> tuple[str, ...]:
    try:
        return tuple(sorted((json.loads(path.read_text()) or {}).get("runtimes") or {}))
    except (OSError, ValueError, AttributeError):
        return ()


def nvme_disks(sys_block: Path = Path("/sys/block")) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in sys_block.glob("nvme*")))


def read_disk(path: Path, mounts: Path = Path("/proc/mounts")) -> DiskReading:
    """The filesystem holding path (its nearest existing folder), its device, free space and NVMe-ness."""
    existing = path.resolve()
    while not existing.exists():
        existing = existing.parent
    device, mount, fs = _mount_of(existing, mounts)
    return DiskReading(path=str(path), filesystem=fs, device=device, free_bytes=shutil.disk_usage(existing).free,
                       on_nvme=_is_nvme(device))


def _mount_of(path: Path, mounts: Path) -> tuple[str, str, str]:
    best = ("?", "/", "?")
    for line in mounts.read_text().splitlines():
        fields = [_unescape(f) for f in line.split()]
        if len(fields) >= 3 and (str(path) == fields[1] or str(path).startswith(fields[1].rstrip("/") + "/")) \
                and len(fields[1]) >= len(best[1]):
            best = (fields[0], fields[1], fields[2])
    return best


def _unescape(field: str) -> str:
    """/proc/mounts writes a space as \\040 (and tab, newline, backslash likewise)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _is_nvme(device: str, sys_block: Path = Path("/sys/class/block")) -> bool:
    """NVMe itself, or a device-mapper/RAID device whose every member is NVMe (followed through slaves/)."""
    name = os.path.basename(os.path.realpath(device)) if device.startswith("/dev/") else os.path.basename(device)
    if name.startswith("nvme"):
        return True
    node = sys_block / name
    if not node.exists():
        return False
    if any(part.startswith("nvme") for part in node.resolve().parts):
        return True
    members = list((node / "slaves").glob("*")) if (node / "slaves").is_dir() else []
    return bool(members) and all(_is_nvme(m.name, sys_block) for m in members)
