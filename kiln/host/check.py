"""`invoke host.check`: a host's readings judged against the image it will run. Pure: readings in,
lines out (pass/warn/fail/skip with the fix). Reading the host is kiln.host.probe's job."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from packaging.version import InvalidVersion, Version

from kiln.data.files import read_json
from kiln.data.gpus import GpuProfile
from kiln.data.image import ImageSpec
from kiln.data.lock import Stack
from kiln.data.tables import host_fixes
from kiln.errors import KilnError
from kiln.host.readings import DiskReading, GpuReading, HostReading

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
APPLICATIONS_CLOCKS_SETTING = 0x2   # NVML clock event reason: clocks held by a clock setting
# GB vs GiB and what the driver keeps: the smoke payload's own figure, read from its data file
PAYLOAD_THRESHOLDS = Path(__file__).resolve().parents[2] / "provision" / "container" / "smoke" / "thresholds.json"
POWER_TOLERANCE_W = 1.0


@dataclass(frozen=True)
class Line:
    verdict: str
    item: str
    measured: str
    expected: str
    fix: str = ""


@lru_cache(maxsize=1)
def vram_slack() -> float:
    return float(read_json(PAYLOAD_THRESHOLDS)["vram_slack"]["value"])


def fixes() -> dict[str, str]:
    return host_fixes().model_dump()


def check_host(host: HostReading, profile: GpuProfile, stack: Stack, models_bytes: int,
               require_gpu: bool = False) -> list[Line]:
    lines = [_driver(host, stack, require_gpu)]
    has_gpu = host.driver is not None and bool(host.gpus)
    toolkit = _toolkit(host)
    lines += toolkit if has_gpu else [_skipped(line) for line in toolkit]
    for gpu in host.gpus:
        lines += _gpu(gpu, profile)
    if host.driver is not None and not host.gpus:
        lines.append(Line(FAIL if require_gpu else SKIP, "gpus", "none", profile.display, fixes()["driver"]))
    lines += _disk(host, models_bytes)
    return lines


def _skipped(line: Line) -> Line:
    """On a host without a GPU (a build host) the toolkit lines are facts, not verdicts."""
    return Line(SKIP, line.item, line.measured, line.expected, "no GPU on this host" if line.verdict != PASS else "")


def exit_code(lines: list[Line]) -> int:
    return 1 if any(line.verdict == FAIL for line in lines) else 0


def _driver(host: HostReading, stack: Stack, require_gpu: bool) -> Line:
    expected = f">= {stack.driver_floor} (CUDA {stack.cuda}; {stack.driver_recommended}+ without compatibility)"
    if host.driver is None:
        verdict = FAIL if require_gpu else SKIP
        return Line(verdict, "driver", f"no NVIDIA driver ({host.nvml_error or 'NVML not found'})", expected,
                    fixes()["driver"] if require_gpu else "a build host needs none; a GPU host does")
    have = _version(host.driver)
    if have < _version(stack.driver_floor):
        return Line(FAIL, "driver", host.driver, expected, f"{fixes()['driver']}; {fixes()['forward_compat']}")
    if have < _version(stack.driver_recommended):
        return Line(WARN, "driver", host.driver, expected,
                    "runs through CUDA minor-version compatibility; upgrade for full support")
    cuda = f" (CUDA {host.cuda_driver // 1000}.{host.cuda_driver % 1000 // 10})" if host.cuda_driver else ""
    return Line(PASS, "driver", host.driver + cuda, expected)


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _toolkit(host: HostReading) -> list[Line]:
    installed = Line(PASS, "container toolkit", ", ".join(host.toolkit), "nvidia-ctk or nvidia-container-cli") \
        if host.toolkit else Line(FAIL, "container toolkit", "not installed", "nvidia-container-toolkit",
                                  fixes()["toolkit"])
    if host.engine is None or not host.engine.reachable:
        return [installed, Line(SKIP, "engine runtime", "no Docker Engine answers", "nvidia runtime or CDI specs")]
    return [installed, _runtime(host), _gpu_container(host)]


def _runtime(host: HostReading) -> Line:
    engine = host.engine
    # `--gpus` works through the nvidia runtime, CDI specs, or the toolkit's prestart hook on the PATH
    registered = "nvidia" in engine.runtimes or "nvidia" in host.daemon_runtimes or \
        "nvidia-container-runtime-hook" in host.toolkit
    measured = f"runtimes {', '.join(engine.runtimes) or 'none'}; CDI specs {len(host.cdi_specs)}"
    if registered or host.cdi_specs:
        return Line(PASS, "engine runtime", measured, "nvidia runtime or CDI specs")
    return Line(FAIL, "engine runtime", measured, "nvidia runtime or CDI specs", fixes()["runtime"])


def _gpu_container(host: HostReading) -> Line:
    seen = host.engine.gpu_container
    if seen is None:
        return Line(SKIP, "GPU in a container", f"not tried ({host.engine.probe_image or 'no image'})",
                    "a container sees the GPU", "build or load the image (or `invoke base`) so a container can try")
    if seen == "":
        return Line(PASS, "GPU in a container", "a one-shot container saw the GPU", "a container sees the GPU")
    return Line(FAIL, "GPU in a container", seen[:160], "a container sees the GPU", fixes()["gpu_container"])


def _gpu(gpu: GpuReading, profile: GpuProfile) -> list[Line]:
    tag = f"gpu{gpu.index}"
    return [_product(gpu, profile, tag), _vram(gpu, profile, tag), _pcie(gpu, profile, tag),
            _flag(gpu.persistence, f"{tag} persistence mode", True, WARN, fixes()["persistence"]),
            _flag(gpu.mig, f"{tag} MIG mode", False, WARN, fixes()["mig"]),
            _flag(gpu.ecc, f"{tag} ECC", gpu.ecc, PASS, ""), _clocks(gpu, tag), _power(gpu, tag)]


def _product(gpu: GpuReading, profile: GpuProfile, tag: str) -> Line:
    names = {" ".join(n.lower().split()) for n in (profile.display, *profile.nvml_names)}
    same_name = " ".join(gpu.name.lower().split()) in names
    same_id = profile.pci_device_id is None or gpu.pci_device_id in (None, profile.pci_device_id)
    measured = gpu.name + (f" ({gpu.pci_device_id:#010x})" if gpu.pci_device_id is not None else "")
    if same_name and same_id:
        return Line(PASS, f"{tag} product", measured, profile.display)
    return Line(FAIL, f"{tag} product", measured, profile.display,
                f"this is not the {profile.name} profile's card: build the image for this card's profile")


def _vram(gpu: GpuReading, profile: GpuProfile, tag: str) -> Line:
    floor = profile.vram_gb * (1 - vram_slack())
    if gpu.vram_bytes is None:
        return Line(SKIP, f"{tag} VRAM", "not reported", f">= {floor:.1f} GB")
    have = gpu.vram_bytes / 1e9
    verdict = PASS if have >= floor else FAIL
    return Line(verdict, f"{tag} VRAM", f"{have:.1f} GB", f">= {floor:.1f} GB",
                "" if verdict == PASS else "a smaller card than the profile: use its own profile")


def _pcie(gpu: GpuReading, profile: GpuProfile, tag: str) -> Line:
    gen = gpu.pcie_max_gen if gpu.pcie_max_gen is not None else gpu.pcie_gen
    width = gpu.pcie_width if gpu.pcie_width is not None else gpu.pcie_max_width
    expected = f"Gen{profile.pcie.gen} x{profile.pcie.width}"
    if gen is None and width is None:
        return Line(SKIP, f"{tag} PCIe", "not reported", expected)
    measured = f"Gen{gen} x{width} (now Gen{gpu.pcie_gen} x{gpu.pcie_width})"
    slow = (gen is not None and gen < profile.pcie.gen) or (width is not None and width < profile.pcie.width)
    return Line(WARN if slow else PASS, f"{tag} PCIe", measured, expected, fixes()["pcie"] if slow else "")


def _flag(value: bool | None, item: str, want: bool | None, otherwise: str, fix: str) -> Line:
    if value is None:
        return Line(SKIP, item, "not reported", _on(want))
    if value == want:
        return Line(PASS, item, _on(value), _on(want))
    return Line(otherwise, item, _on(value), _on(want), fix)


def _on(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


def _clocks(gpu: GpuReading, tag: str) -> Line:
    if gpu.clock_reasons is None and None in (gpu.app_clock_mhz, gpu.app_default_mhz):
        return Line(SKIP, f"{tag} clocks", "not reported by this driver", "default clocks")
    held = gpu.clock_reasons is not None and bool(gpu.clock_reasons & APPLICATIONS_CLOCKS_SETTING)
    changed = None not in (gpu.app_clock_mhz, gpu.app_default_mhz) and gpu.app_clock_mhz != gpu.app_default_mhz
    measured = f"SM {gpu.sm_clock_mhz} MHz of {gpu.sm_max_mhz}; applications {gpu.app_clock_mhz}/{gpu.app_default_mhz}"
    if held or changed:
        return Line(WARN, f"{tag} clocks", measured + " (held by a clock setting)", "default clocks", fixes()["clocks"])
    return Line(PASS, f"{tag} clocks", measured, "default clocks")


def _power(gpu: GpuReading, tag: str) -> Line:
    if gpu.power_limit_w is None or gpu.power_default_w is None:
        return Line(SKIP, f"{tag} power limit", "not reported", "the card's default")
    measured, expected = f"{gpu.power_limit_w:.0f} W set", f"{gpu.power_default_w:.0f} W (default)"
    if abs(gpu.power_limit_w - gpu.power_default_w) > POWER_TOLERANCE_W:
        return Line(WARN, f"{tag} power limit", measured + " (changed)", expected, fixes()["power"])
    return Line(PASS, f"{tag} power limit", measured, expected)


def _disk(host: HostReading, models_bytes: int) -> list[Line]:
    nvme = Line(PASS if host.nvme else WARN, "NVMe devices", ", ".join(host.nvme) or "none", "local NVMe",
                "" if host.nvme else fixes()["nvme"])
    if host.cache is None:
        return [nvme, Line(SKIP, "cache path", "none given (--cache)", "a local disk with room for the models")]
    return [nvme, *_cache(host.cache, models_bytes)]


def _cache(disk: DiskReading, models_bytes: int) -> list[Line]:
    where = Line(PASS if disk.on_nvme else WARN, "cache disk", f"{disk.path} on {disk.device} ({disk.filesystem})",
                 "NVMe", "" if disk.on_nvme else fixes()["nvme"])
    fits = disk.free_bytes >= models_bytes
    room = Line(PASS if fits else FAIL, "cache space", f"{disk.free_bytes / 1e9:.1f} GB free",
                f">= {models_bytes / 1e9:.1f} GB (the image's models not yet there)", "" if fits else fixes()["space"])
    return [where, room]


def model_bytes(image: ImageSpec, cache: Path | None = None) -> int:
    """What the image's models still need on the cache: those already in place are not counted again."""
    missing = [m for m in image.models if cache is None or not (cache / "models" / m.folder / m.file).is_file()]
    return sum(m.size for m in missing)


def as_json(host: HostReading, lines: list[Line]) -> dict:
    return {"reading": asdict(host), "lines": [asdict(line) for line in lines], "exit": exit_code(lines)}


def write_json(path: Path, data: dict) -> None:
    try:
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise KilnError(f"cannot write the report ({exc.strerror})", str(path), "choose a writable path") from None
