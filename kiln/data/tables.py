"""The toolkit's own reference tables (kiln/data/tables/): ComfyUI's command line per version, the
PYTORCH_CUDA_ALLOC_CONF keys per torch release and the files each stack's images leave out, loaded through
the same validation as user data."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from kiln.data.files import read_yaml
from kiln.data.schema import Model, validate

TABLES = Path(__file__).parent / "tables"
FLAGS_PATH = TABLES / "comfyui_flags.yaml"
ALLOC_PATH = TABLES / "torch_alloc_conf.yaml"


class FlagSpec(Model):
    takes: Literal["none", "optional", "int", "float", "str", "choice", "list", "any"]  # any: zero or more
    type: Literal["int", "float"] | None = None
    choices: tuple[str | int, ...] | None = None
    default: Any = None
    repeatable: bool = False
    help: str


class FlagVersion(Model):
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    flags: dict[str, FlagSpec]
    exclusive: tuple[tuple[str, ...], ...]


class FlagsFile(Model):
    versions: dict[str, FlagVersion]
    never_existed: dict[str, str] = Field(description="flags people use that no ComfyUI had, with the fix")


class FlagTable(Model):
    """One ComfyUI version's flags, with the fixes for flags that never existed."""

    version: str
    flags: dict[str, FlagSpec]
    exclusive: tuple[tuple[str, ...], ...]
    never_existed: dict[str, str]

    def group_of(self, flag: str) -> tuple[str, ...]:
        return next((g for g in self.exclusive if flag in g), ())


class AllocKey(Model):
    kind: Literal["int", "fraction", "bool", "backend", "divisions"]
    native_only: bool = False


class AllocFile(Model):
    torch: dict[str, dict[str, AllocKey]]


class HostFixes(Model):
    """The install and configuration steps `invoke host.check` prints (Debian/Ubuntu)."""

    driver: str
    toolkit: str
    runtime: str
    gpu_container: str
    persistence: str
    clocks: str
    power: str
    mig: str
    pcie: str
    nvme: str
    space: str
    forward_compat: str


class CudaDriver(Model):
    driver: str = Field(pattern=r"^\d+(\.\d+)*$")
    branch: str


class CudaDriversFile(Model):
    cuda: dict[str, CudaDriver] = Field(description="per CUDA runtime major: the oldest driver that runs it")


class PruneEntry(Model):
    # relative to site-packages: the first segment names a package, no segment starts with a dot (none
    # climbs out) and every one has a letter or digit of its own (no `*` or `**` that takes everything)
    path: str = Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_*-][A-Za-z0-9_.*-]*)*$")
    why: str
    trace: Literal["unread", "read"] = Field(description="what bench/opened_files.py found on the GPU host")

    @field_validator("path")
    @classmethod
    def _names_something(cls, path: str) -> str:
        if any(not any(c.isalnum() for c in part) for part in path.split("/")):
            raise ValueError(f"{path}: every segment must name something, not only wildcards")
        return path


class PruneFile(Model):
    stacks: dict[str, tuple[PruneEntry, ...]]


PRUNE_PATH = TABLES / "prune.yaml"
HOST_FIXES_PATH = TABLES / "host_fixes.yaml"
CUDA_DRIVERS_PATH = TABLES / "cuda_drivers.yaml"


def cuda_driver(cuda: str) -> CudaDriver | None:
    """The oldest driver a CUDA runtime (e.g. '13.0') runs on, or None when the table does not know its major."""
    return _cuda_drivers().cuda.get(cuda.split(".")[0])


@lru_cache(maxsize=None)
def _cuda_drivers() -> CudaDriversFile:
    return validate(CudaDriversFile, read_yaml(CUDA_DRIVERS_PATH), CUDA_DRIVERS_PATH)


def pruned_paths(stack: str) -> tuple[str, ...]:
    """What the stack's images leave out of site-packages: the candidates the trace found unread."""
    return tuple(e.path for e in _prune_file().stacks.get(stack, ()) if e.trace == "unread")


@lru_cache(maxsize=None)
def _prune_file() -> PruneFile:
    return validate(PruneFile, read_yaml(PRUNE_PATH), PRUNE_PATH)


@lru_cache(maxsize=None)
def host_fixes() -> HostFixes:
    return validate(HostFixes, read_yaml(HOST_FIXES_PATH), HOST_FIXES_PATH)


@lru_cache(maxsize=None)
def flags_file() -> FlagsFile:
    return validate(FlagsFile, read_yaml(FLAGS_PATH), FLAGS_PATH)


def flag_table(version: str) -> FlagTable | None:
    entry = flags_file().versions.get(version)
    if entry is None:
        return None
    return FlagTable(version=version, flags=entry.flags, exclusive=entry.exclusive,
                     never_existed=flags_file().never_existed)


def known_versions() -> list[str]:
    return list(flags_file().versions)


@lru_cache(maxsize=None)
def alloc_keys(torch: str) -> dict[str, AllocKey] | None:
    return validate(AllocFile, read_yaml(ALLOC_PATH), ALLOC_PATH).torch.get(torch)
