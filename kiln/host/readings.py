"""What a host is, as read (never changed): the driver and GPUs through NVML, the container toolkit and
the engine, the disks under the cache path. Plain values, so that the check can be tested on recorded
readings from hosts this machine is not."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    pci_device_id: int | None = None
    vram_bytes: int | None = None
    pcie_gen: int | None = None            # current link (idle links train down: informational)
    pcie_width: int | None = None
    pcie_max_gen: int | None = None        # what the card and slot can do
    pcie_max_width: int | None = None
    persistence: bool | None = None
    mig: bool | None = None
    ecc: bool | None = None
    sm_clock_mhz: int | None = None
    sm_max_mhz: int | None = None
    app_clock_mhz: int | None = None       # applications clock now, and the card's default
    app_default_mhz: int | None = None
    clock_reasons: int | None = None       # NVML clock event reasons bit mask
    power_limit_w: float | None = None     # set (nvidia-smi -pl), and the card's default
    power_default_w: float | None = None


@dataclass(frozen=True)
class EngineReading:
    reachable: bool
    runtimes: tuple[str, ...] = ()
    default_runtime: str = ""
    gpu_container: str | None = None       # None: not tried; "" it saw a GPU; else the error
    probe_image: str = ""                  # what the one-shot container ran, or why it did not run


@dataclass(frozen=True)
class DiskReading:
    path: str
    filesystem: str
    device: str
    free_bytes: int
    on_nvme: bool


@dataclass(frozen=True)
class HostReading:
    driver: str | None = None              # None: no NVIDIA driver answers NVML
    nvml_error: str = ""
    cuda_driver: int | None = None         # e.g. 13000 for CUDA 13.0
    gpus: tuple[GpuReading, ...] = ()
    toolkit: tuple[str, ...] = ()          # NVIDIA Container Toolkit programs found
    cdi_specs: tuple[str, ...] = ()
    daemon_runtimes: tuple[str, ...] = ()  # runtimes registered in /etc/docker/daemon.json
    engine: EngineReading | None = None    # None: no engine on this host
    nvme: tuple[str, ...] = ()
    cache: DiskReading | None = None
    extra: dict = field(default_factory=dict)


def reading_from_json(data: dict) -> HostReading:
    """A reading as `invoke host.check --json` wrote it (its "reading"), e.g. one recorded on another host."""
    fields = dict(data)
    fields["gpus"] = tuple(GpuReading(**g) for g in fields.get("gpus", ()))
    fields["engine"] = EngineReading(**{**fields["engine"], "runtimes": tuple(fields["engine"].get("runtimes", ()))}) \
        if fields.get("engine") else None
    fields["cache"] = DiskReading(**fields["cache"]) if fields.get("cache") else None
    for key in ("toolkit", "cdi_specs", "nvme", "daemon_runtimes"):
        fields[key] = tuple(fields.get(key, ()))
    return HostReading(**fields)
