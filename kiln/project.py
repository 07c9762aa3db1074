"""A project checkout: where its data files live, and loading them into a gate subject."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from kiln.data.gpus import GpuProfile, find_gpu, load_gpus
from kiln.data.image import image_path, load_image
from kiln.data.lock import Lock, LockSet, read_lock
from kiln.data.records.folder import BuildFolder
from kiln.data.subject import Subject
from kiln.data.tables import flag_table
from kiln.errors import KilnError
from kiln.identity import base_ref
from kiln.gate.findings import Finding, run_rules
from kiln.gate.kernels import stacks_running
from kiln.gate.rules import ALL_RULES

DEFAULT_IMAGE = "comfyui"


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def lock_path(self) -> Path:
        return self.root / "versions.lock"

    @property
    def gpus_path(self) -> Path:
        return self.root / "gpus.yaml"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def payload_dir(self) -> Path:
        return self.root / "provision" / "container"

    @property
    def build(self) -> BuildFolder:
        """Where rendered contexts and every stage's record live."""
        return BuildFolder(self.root / "build")

    @cached_property
    def locks(self) -> LockSet:
        return read_lock(self.lock_path, _shown(self.lock_path, self.root))

    @cached_property
    def lock(self) -> Lock:
        """The default stack."""
        return self.locks.stack()

    def stack_lock(self, name: str | None) -> Lock:
        return self.locks.stack(name)

    @cached_property
    def gpus(self) -> dict[str, GpuProfile]:
        shown = _shown(self.gpus_path, self.root)
        profiles = load_gpus(self.gpus_path, shown)
        for profile in profiles.values():
            for stack in profile.serving_stacks:
                if stack not in self.locks.names:
                    raise KilnError(f"unknown stack '{stack}'", f"{shown} profiles.{profile.name}.serving.stacks",
                                    f"use one of the lock's [stacks]: {', '.join(self.locks.names)}")
        return profiles

    def image_stacks(self) -> dict[str, str]:
        """Each shipped image spec with the stack it gets unless --stack says otherwise."""
        default = self.lock
        specs = (load_image(path, default.default_base, _shown(path, self.root))
                 for path in sorted(self.images_dir.glob("*.yaml")))
        return {spec.name: spec.stack or default.name for spec in specs}

    def stacks_for(self, profile: GpuProfile) -> list[str]:
        """The lock's stacks whose torch build has kernels for the card."""
        return stacks_running(self.locks.file.stacks, profile.compute_capability)

    def image_base(self, image: str = DEFAULT_IMAGE) -> str:
        """The base reference an image spec builds on (every stack shares the bases)."""
        path = image_path(self.images_dir, image)
        spec = load_image(path, self.lock.default_base, _shown(path, self.root))
        return base_ref(self.lock, spec.base)

    def subject(self, gpu: str, image: str = DEFAULT_IMAGE, stack: str | None = None) -> Subject:
        """The image on one GPU profile, built from `stack` if given, else the stack its spec names."""
        default = self.lock
        profile = find_gpu(self.gpus, gpu)
        path = image_path(self.images_dir, image)
        spec = load_image(path, default.default_base, _shown(path, self.root))
        lock = self._named_stack(stack, "--stack") if stack else \
            self._named_stack(spec.stack, f"{spec.where} stack") if spec.stack else default
        return Subject(lock=lock, gpu=profile.on_stack(lock.name), image=spec, flags=flag_table(lock.comfyui.version))

    def _named_stack(self, name: str, where: str) -> Lock:
        """A stack named by the user: a typo is theirs, so the message points at where they wrote it."""
        names = self.locks.names
        if name not in names:
            raise KilnError(f"unknown stack '{name}'", where, f"use one of the lock's [stacks]: {', '.join(names)}")
        return self.stack_lock(name)

    def check(self, gpu: str, image: str = DEFAULT_IMAGE, strict: bool = False,
              stack: str | None = None) -> tuple[Subject, list[Finding]]:
        subject = self.subject(gpu, image, stack)
        return subject, run_rules(subject, ALL_RULES, strict)


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
