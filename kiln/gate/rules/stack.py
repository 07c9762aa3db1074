"""Rules on the locked stack itself: pins that agree, wheels that exist, CUDA carried by the wheels."""

from __future__ import annotations

from typing import Iterator

from packaging.specifiers import SpecifierSet
from packaging.utils import parse_wheel_filename

from kiln.data.subject import Subject
from kiln.gate.findings import ERROR, NOTE, Finding
from kiln.lock.consistency import consistency_problems, requirement_pins
from kiln.lock.platform import target_environment, target_tags


def xformers_matches_torch(s: Subject) -> Iterator[Finding]:
    spec = requirement_pins(s.lock, "xformers", "torch")
    torch = s.lock.stack.torch
    if spec and not SpecifierSet(spec).contains(torch, prereleases=True):
        yield Finding(ERROR, "xformers-torch", f"versions.lock {s.lock.table('stack')}",
                      f"xformers {s.lock.stack.xformers} requires torch{spec} (its wheel metadata) but the stack "
                      f"pins torch {torch}; pip would silently swap torch, or fail with --no-deps",
                      f"set torch in {s.lock.table('stack')} to a version in torch{spec}, or pick the xformers release built for "
                      f"torch {torch}; then run `invoke lock`")


def attention_backend(s: Subject) -> Iterator[Finding]:
    st = s.lock.stack
    if not st.has_xformers:
        yield Finding(NOTE, "attention", f"versions.lock {s.lock.table('stack')}.xformers",
                      f"no xformers: no release is built for torch {st.torch}, so ComfyUI's attention runs through "
                      "PyTorch SDPA (scaled_dot_product_attention)")


def wheels_for_target(s: Subject) -> Iterator[Finding]:
    tags = set(target_tags(s.lock))
    for pkg in s.lock.packages.values():
        if not tags.intersection(parse_wheel_filename(pkg.wheel)[3]):
            yield Finding(ERROR, "wheel-platform", f"versions.lock {s.lock.table('packages.' + pkg.name)}",
                          f"{pkg.wheel} does not install on cp{s.lock.stack.python.replace('.', '')} "
                          f"{s.lock.resolve.uv_platform}", "run `invoke lock` to pick a wheel for the stack's Python")


def lock_consistent(s: Subject) -> Iterator[Finding]:
    for problem in consistency_problems(s.lock, target_environment(s.lock)):
        yield Finding(ERROR, "lock", "versions.lock", problem, "regenerate it with `invoke lock`")


def cuda_carried_by_wheels(s: Subject) -> Iterator[Finding]:
    st = s.lock.stack
    for package, want, what in ((st.cuda_runtime_package, st.cuda, "CUDA"), (st.cudnn_package, st.cudnn, "cuDNN")):
        pkg = s.lock.package(package)
        got = pkg.version if pkg else "missing"
        if got != want and not got.startswith(want + "."):
            yield Finding(ERROR, "cuda-wheels", f"versions.lock {s.lock.table('packages.' + package)}",
                          f"the stack declares {what} {want} but the locked {package} is {got}",
                          f"declare the {what} version torch {st.torch} actually carries, or re-lock")


def base_matches_python(s: Subject) -> Iterator[Finding]:
    base = s.lock.bases.get(s.image.base)
    if base is None:
        yield Finding(ERROR, "base", f"{s.image.where} base", f"base '{s.image.base}' is not defined in versions.lock",
                      f"use one of: {', '.join(s.lock.bases)}")
    elif base.python != s.lock.stack.python:
        yield Finding(ERROR, "base", f"versions.lock [bases.{s.image.base}]",
                      f"base Python {base.python} differs from the stack's Python {s.lock.stack.python}; the locked "
                      f"wheels are built for cp{s.lock.stack.python.replace('.', '')}",
                      "pick a base with the stack's Python")
