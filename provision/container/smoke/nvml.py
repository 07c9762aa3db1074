"""What the driver says about the GPU: NVML first, nvidia-smi as fallback."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from typing import Any, Callable, Optional

SMI_FIELDS = (
    "count", "name", "driver_version", "memory.total",
    "pcie.link.gen.current", "pcie.link.width.current",
    "pcie.link.gen.max", "pcie.link.width.max",
)


@dataclasses.dataclass
class DriverView:
    source: str = ""
    error: str = ""
    count: Optional[int] = None
    name: Optional[str] = None
    driver: Optional[str] = None
    total_bytes: Optional[int] = None
    cc: Optional[tuple] = None
    cur_gen: Optional[int] = None
    cur_width: Optional[int] = None
    max_gen: Optional[int] = None
    max_width: Optional[int] = None
    pci_device_id: Optional[int] = None  # NVML pciDeviceId: device id << 16 | vendor id (0x10de)

    @property
    def ok(self) -> bool:
        return self.count is not None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _safe(fn: Callable, *args) -> Any:
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported and friends: field unknown
        return None


def read_nvml(pynvml: Any, uuid: Optional[str] = None) -> DriverView:
    """Read device `uuid` (the one torch uses) or index 0 through NVML."""
    if pynvml is None:
        return DriverView(error="pynvml not importable")
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return DriverView(source="nvml", error=f"nvmlInit failed: {exc}")
    try:
        return _read_nvml_device(pynvml, uuid)
    finally:
        _safe(pynvml.nvmlShutdown)


def _nvml_handle(pynvml: Any, uuid: Optional[str]) -> Any:
    if uuid:
        handle = _safe(pynvml.nvmlDeviceGetHandleByUUID, uuid)
        if handle is not None:
            return handle
    return pynvml.nvmlDeviceGetHandleByIndex(0)


def _read_nvml_device(pynvml: Any, uuid: Optional[str]) -> DriverView:
    view = DriverView(source="nvml")
    view.count = int(pynvml.nvmlDeviceGetCount())
    driver = _safe(pynvml.nvmlSystemGetDriverVersion)
    view.driver = _text(driver) if driver is not None else None
    if view.count == 0:
        return view
    handle = _nvml_handle(pynvml, uuid)
    name = _safe(pynvml.nvmlDeviceGetName, handle)
    view.name = _text(name) if name is not None else None
    memory = _safe(pynvml.nvmlDeviceGetMemoryInfo, handle)
    view.total_bytes = int(memory.total) if memory is not None else None
    cc = _safe(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    view.cc = tuple(int(x) for x in cc) if cc is not None else None
    view.cur_gen = _safe(pynvml.nvmlDeviceGetCurrPcieLinkGeneration, handle)
    view.cur_width = _safe(pynvml.nvmlDeviceGetCurrPcieLinkWidth, handle)
    view.max_gen = _safe(pynvml.nvmlDeviceGetMaxPcieLinkGeneration, handle)
    view.max_width = _safe(pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle)
    pci = _safe(lambda: pynvml.nvmlDeviceGetPciInfo(handle))
    view.pci_device_id = int(pci.pciDeviceId) if pci is not None else None
    return view


def read_nvidia_smi(runner: Callable = subprocess.run) -> DriverView:
    """Fallback when pynvml is absent: one nvidia-smi query, first GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return DriverView(error="nvidia-smi not found")
    cmd = [exe, "--query-gpu=" + ",".join(SMI_FIELDS), "--format=csv,noheader,nounits"]
    try:
        proc = runner(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return DriverView(source="nvidia-smi", error=str(exc))
    if proc.returncode != 0 or not proc.stdout.strip():
        return DriverView(source="nvidia-smi", error=(proc.stderr or proc.stdout).strip()[:160])
    return parse_smi_line(proc.stdout.strip().splitlines()[0])


def _int_or_none(text: str) -> Optional[int]:
    try:
        return int(float(text))
    except ValueError:
        return None


def parse_smi_line(line: str) -> DriverView:
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != len(SMI_FIELDS):
        return DriverView(source="nvidia-smi", error=f"unexpected output: {line[:120]}")
    count, name, driver, mem_mib, cur_gen, cur_width, max_gen, max_width = fields
    mib = _int_or_none(mem_mib)
    return DriverView(
        source="nvidia-smi", count=_int_or_none(count), name=name, driver=driver,
        total_bytes=mib * 1024 * 1024 if mib is not None else None,
        cur_gen=_int_or_none(cur_gen), cur_width=_int_or_none(cur_width),
        max_gen=_int_or_none(max_gen), max_width=_int_or_none(max_width),
    )


def read_driver_view(pynvml: Any, uuid: Optional[str] = None) -> DriverView:
    view = read_nvml(pynvml, uuid)
    if view.ok:
        return view
    smi = read_nvidia_smi()
    if smi.ok:
        return smi
    smi.error = f"{view.error}; {smi.error}"
    return smi


# nvmlClocksEventReason* / nvmlClocksThrottleReason* bits
THROTTLE_BITS = {
    0x1: "idle", 0x2: "application clocks", 0x4: "power cap", 0x8: "HW slowdown",
    0x20: "sync boost", 0x40: "SW thermal", 0x80: "HW thermal", 0x100: "power brake",
    0x200: "display clocks",
}


def decode_throttle(mask: Optional[int]) -> list:
    if not mask:
        return []
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def clock_state(pynvml: Any, uuid: Optional[str] = None) -> str:
    """One phrase on clocks and power right now, '' when NVML is unavailable.
    Read just after a probe: explains a low number (e.g. power capping)."""
    if pynvml is None:
        return ""
    try:
        pynvml.nvmlInit()
    except Exception:
        return ""
    try:
        return _clock_phrase(pynvml, _nvml_handle(pynvml, uuid))
    except Exception:
        return ""
    finally:
        _safe(pynvml.nvmlShutdown)


def _clock_phrase(pynvml: Any, handle: Any) -> str:
    sm = _safe(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM)
    power = _safe(pynvml.nvmlDeviceGetPowerUsage, handle)
    limit = _safe(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    reasons_fn = (getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
    reasons = decode_throttle(_safe(reasons_fn, handle)) if reasons_fn else []
    parts = []
    if sm is not None:
        parts.append(f"SM {sm} MHz")
    if power is not None and limit:
        parts.append(f"{power // 1000}/{limit // 1000} W")
    if reasons:
        parts.append("clocks held by " + ", ".join(reasons))
    return " ".join(parts[:2]) + (f", {parts[2]}" if len(parts) > 2 else "")
