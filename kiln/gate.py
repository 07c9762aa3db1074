"""The compatibility gate: small rules over (lock, GPU profile, image spec), each returning findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from .flags import FlagTable
from .gpus import GpuProfile
from .images import ImageSpec
from .lockfile import Lock

ERROR, WARNING, NOTE = "error", "warning", "note"
_ORDER = {ERROR: 0, WARNING: 1, NOTE: 2}


@dataclass(frozen=True)
class Finding:
    severity: str
    rule: str
    where: str
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.severity}: [{self.rule}] {self.where}: {self.message}.{fix}"


@dataclass(frozen=True)
class Subject:
    lock: Lock
    gpu: GpuProfile
    image: ImageSpec
    flags: FlagTable | None


Rule = Callable[[Subject], Iterable[Finding]]


def run_rules(subject: Subject, rules: Iterable[Rule], strict: bool = False) -> list[Finding]:
    findings = [f for rule in rules for f in rule(subject)]
    if strict:
        findings = [Finding(ERROR, f.rule, f.where, f.message + " (--strict)", f.fix) if f.severity == WARNING
                    else f for f in findings]
    return sorted(findings, key=lambda f: _ORDER[f.severity])


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]
