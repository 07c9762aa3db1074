"""versions.lock, the single source of every pin: its model, loading and digests."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.utils import canonicalize_name
from pydantic import Field, model_validator

from kiln.data.files import read_toml
from kiln.data.schema import Model, validate
from kiln.errors import KilnError

INPUT_SECTIONS = ("stack", "comfyui", "resolve")
STACK_PACKAGES = ("torch", "torchvision", "torchaudio", "xformers")
NO_XFORMERS = "none"
SHA256 = r"^[0-9a-f]{64}$"
VERSION = r"^\d+(\.\d+)*([a-z0-9.+]*)$"
SM = r"^sm_\d{2,3}[a-z]?$"
STACK_NAME = r"^[a-z][a-z0-9-]*$"


class LockMeta(Model):
    format: Literal[2] = Field(alias="schema", description="layout version of this file")
    default_base: str = Field(description="the [bases] entry images use unless their spec names another")
    default_stack: str = Field(description="the [stacks] entry images use unless their spec names another")


class Stack(Model):
    python: str = Field(pattern=r"^3\.\d+$", description="a Python version like 3.11")
    torch: str = Field(pattern=VERSION)
    torchvision: str = Field(pattern=VERSION)
    torchaudio: str = Field(pattern=VERSION)
    xformers: str = Field(pattern=VERSION + "|^none$", description="a version, or none where no xformers wheel is "
                          "built for this torch (attention then runs through PyTorch SDPA)")
    cuda: str = Field(pattern=r"^\d+\.\d+$", description="a CUDA version like 12.1")
    cudnn: str = Field(pattern=VERSION)
    cuda_runtime_package: str
    cudnn_package: str
    driver_floor: str = Field(pattern=VERSION)
    driver_recommended: str = Field(pattern=VERSION)
    nvidia_require_cuda: str
    torch_sass: tuple[str, ...] = Field(min_length=1)
    torch_ptx: tuple[str, ...] = ()

    @property
    def has_xformers(self) -> bool:
        return self.xformers != NO_XFORMERS

    def pinned_packages(self) -> tuple[str, ...]:
        """The STACK_PACKAGES this stack pins (xformers only where it has one)."""
        return tuple(name for name in STACK_PACKAGES if name != "xformers" or self.has_xformers)

    @model_validator(mode="after")
    def _archs(self) -> "Stack":
        bad = [a for a in (*self.torch_sass, *self.torch_ptx) if not re.match(SM, a)]
        if bad:
            raise ValueError(f"'{bad[0]}' is not a CUDA architecture like 'sm_86'")
        return self


class ComfyUI(Model):
    version: str = Field(pattern=VERSION)
    repo: str
    commit: str = Field(pattern=r"^[0-9a-f]{40}$", description="the full 40-hex commit id of that version")
    released: datetime.date
    requirements: tuple[str, ...]


class Resolve(Model):
    as_of: datetime.date = Field(description="resolve as the index stood on this date (uv --exclude-newer)")
    index: str
    python_full: str = Field(pattern=r"^3\.\d+\.\d+$")
    uv_platform: str
    wheel_platforms: tuple[str, ...] = Field(min_length=1)


class Base(Model):
    """A base image: debootstrapped here (suite, variant, mirror, packages) or pulled by digest."""

    kind: Literal["debootstrap", "registry"]
    python: str
    suite: str | None = None
    variant: str | None = None
    mirror: str | None = None
    packages: tuple[str, ...] = ()
    build_only: tuple[str, ...] = ()
    image: str | None = None
    digest: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$", description="an image digest: sha256:<64 hex>")
    runtime_packages: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _kind_fields(self) -> "Base":
        need = ("suite", "variant", "mirror") if self.kind == "debootstrap" else ("image", "digest")
        missing = [key for key in need if getattr(self, key) is None]
        if missing:
            raise ValueError(f"a {self.kind} base needs {', '.join(missing)}")
        return self

    def recipe(self) -> dict[str, Any]:
        """The fields as written: a base whose recipe is unchanged is not rebuilt."""
        return self.model_dump(mode="json", exclude_unset=True)


class PackageRow(Model):
    version: str
    wheel: str
    url: str
    sha256: str = Field(pattern=SHA256, description="a sha256: 64 lowercase hex digits")
    requires: tuple[str, ...] = ()
    marker: str = ""
    entry_sha256: str = Field(pattern=SHA256, description="a sha256 of this entry, written by `invoke lock`")


class Package(PackageRow):
    name: str
    entry_sha256: str = ""  # filled in by entry_digest() when a resolution makes the entry

    def entry_digest(self) -> str:
        """What `invoke lock` wrote for this entry: a hand edit of any field no longer matches it."""
        fields = {"name": self.name, "version": self.version, "wheel": self.wheel, "url": self.url,
                  "sha256": self.sha256, "requires": list(self.requires), "marker": self.marker}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class StackEntry(Model):
    """One named stack: its pins, its ComfyUI, how it was resolved and the resolved wheels."""

    title: str = Field(description="one line saying what the stack is for")
    inputs_sha256: str = Field(pattern=SHA256, description="a sha256 (64 lowercase hex digits) of the inputs")
    packages_sha256: str = Field(pattern=SHA256, description="a sha256 of the set of [packages] entries")
    stack: Stack
    comfyui: ComfyUI
    resolve: Resolve
    packages: dict[str, PackageRow] = {}


class LockFile(Model):
    lock: LockMeta
    bases: dict[str, Base] = Field(min_length=1)
    stacks: dict[Annotated[str, Field(pattern=STACK_NAME)], StackEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _defaults(self) -> "LockFile":
        if self.lock.default_base not in self.bases:
            raise ValueError(f"lock.default_base '{self.lock.default_base}' is not one of [bases] "
                             f"({', '.join(self.bases)})")
        if self.lock.default_stack not in self.stacks:
            raise ValueError(f"lock.default_stack '{self.lock.default_stack}' is not one of [stacks] "
                             f"({', '.join(self.stacks)})")
        return self


@dataclass(frozen=True)
class Lock:
    """One named stack of versions.lock with the bases every stack shares: what an image is built from."""

    path: Path
    name: str
    raw: dict[str, Any]           # the stack's own table as written
    entry: StackEntry
    file: LockFile
    packages: dict[str, Package]  # by canonical name
    digest: str                   # sha256 of this stack and the bases, carried by every image built from it

    @property
    def stack(self) -> Stack:
        return self.entry.stack

    @property
    def comfyui(self) -> ComfyUI:
        return self.entry.comfyui

    @property
    def resolve(self) -> Resolve:
        return self.entry.resolve

    @property
    def bases(self) -> dict[str, Base]:
        return self.file.bases

    @property
    def default_base(self) -> str:
        return self.file.lock.default_base

    @property
    def inputs_sha256(self) -> str:
        return self.entry.inputs_sha256

    @property
    def packages_sha256(self) -> str:
        return self.entry.packages_sha256

    @property
    def stacks(self) -> dict[str, StackEntry]:
        """Every stack of the file, so a finding can name the one that fixes it."""
        return self.file.stacks

    def table(self, key: str) -> str:
        """How messages name one of this stack's tables: table("packages.torch") -> [stacks.card.packages.torch]."""
        return f"[stacks.{self.name}.{key}]"

    def top_requirements(self) -> list[str]:
        return [f"{name}=={getattr(self.stack, name)}" for name in self.stack.pinned_packages()] + \
            list(self.comfyui.requirements)

    def package(self, name: str) -> Package | None:
        return self.packages.get(canonicalize_name(name))


def inputs_digest(raw: dict[str, Any]) -> str:
    inputs = {section: raw.get(section, {}) for section in INPUT_SECTIONS}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def packages_digest(packages: dict[str, "Package"]) -> str:
    """Over every entry's own digest: an entry added or removed by hand no longer matches it."""
    entries = sorted(f"{key} {pkg.entry_digest()}" for key, pkg in packages.items())
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def stack_digest(raw: dict[str, Any], name: str) -> str:
    """What an image built from one stack depends on: that stack, the bases and the file's layout
    (another stack's edits leave it unchanged)."""
    scope = {"schema": raw["lock"]["schema"], "default_base": raw["lock"]["default_base"],
             "bases": raw["bases"], "stack": raw["stacks"][name]}
    return hashlib.sha256(json.dumps(scope, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class LockSet:
    """versions.lock read and validated once; each stack is a view of it."""

    path: Path
    shown: str
    raw: dict[str, Any]
    file: LockFile

    @property
    def names(self) -> list[str]:
        return list(self.file.stacks)

    def stack(self, name: str | None = None) -> Lock:
        """The named stack (default: the file's default_stack)."""
        name = name or self.file.lock.default_stack
        if name not in self.file.stacks:
            raise KilnError(f"unknown stack '{name}'", self.shown or str(self.path),
                            f"use one of the lock's [stacks]: {', '.join(self.file.stacks)}")
        entry = self.file.stacks[name]
        packages = {canonicalize_name(n): Package(name=n, **row.model_dump()) for n, row in entry.packages.items()}
        return Lock(path=self.path, name=name, raw=self.raw["stacks"][name], entry=entry, file=self.file,
                    packages=packages, digest=stack_digest(self.raw, name))


def read_lock(path: Path, shown: str = "") -> LockSet:
    raw = read_toml(path)
    return LockSet(path=path, shown=shown, raw=raw, file=validate(LockFile, raw, path, shown))


def load_lock(path: Path, shown: str = "", stack: str | None = None) -> Lock:
    """One stack of the file (default: its default_stack)."""
    return read_lock(path, shown).stack(stack)
