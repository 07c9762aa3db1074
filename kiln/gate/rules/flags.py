"""Rules on ComfyUI's launch line, against the flag table of the pinned ComfyUI version."""

from __future__ import annotations

from typing import Iterator

from kiln.launch import MANAGED, profile_flags
from kiln.data.tables import known_versions
from kiln.gate.argv import parse
from kiln.data.subject import Subject
from kiln.gate.findings import ERROR, WARNING, Finding


def launch_flags_valid(s: Subject) -> Iterator[Finding]:
    where = f"{s.image.where} server.flags"
    if s.flags is None:
        yield Finding(WARNING, "flags", where, f"no flag table for ComfyUI {s.lock.comfyui.version} "
                      f"(known: {', '.join(known_versions())}); launch flags are not checked",
                      "add that version's table to kiln/data/tables/comfyui_flags.yaml from its comfy/cli_args.py")
        return
    parsed = parse(list(s.image.flags), s.flags)
    for p in parsed.problems:
        yield Finding(ERROR, "flags", where, p.message, p.fix)
    yield from _semantic(s, [name for name, _ in parsed.flags], where)
    for p in parse(profile_flags(s.gpu, s.image, s.flags), s.flags).problems:
        yield Finding(ERROR, "flags", f"gpus.yaml profiles.{s.gpu.name}.serving", p.message, p.fix)


def _semantic(s: Subject, names: list[str], where: str) -> Iterator[Finding]:
    seen: set[str] = set()
    for name in names:
        if name == "--cpu":
            yield Finding(ERROR, "flags", where, f"--cpu runs every model on the CPU, yet this image targets "
                          f"{s.gpu.display}", "remove --cpu (use it only for CPU-only test runs)")
        elif name in MANAGED:
            yield Finding(ERROR, "flags", where, f"{name} is set by the toolkit (--listen 0.0.0.0 --port "
                          f"{s.image.port})", "remove it; change server.port to move the port")
        elif name in seen and not s.flags.flags[name].repeatable:
            yield Finding(ERROR, "flags", where, f"{name} is given twice", "keep one")
        else:
            yield from _exclusive(s, name, seen, where)
        seen.add(name)


def _exclusive(s: Subject, name: str, seen: set[str], where: str) -> Iterator[Finding]:
    clash = [other for other in s.flags.group_of(name) if other in seen and other != name]
    if clash:
        yield Finding(ERROR, "flags", where, f"{name} and {clash[0]} exclude each other in ComfyUI "
                      f"{s.flags.version}", "keep one of them")
