"""Findings and running the rules: each rule looks at a Subject and yields findings carrying the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from kiln.data.subject import Subject

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


Rule = Callable[[Subject], Iterable[Finding]]


def run_rules(subject: Subject, rules: Iterable[Rule], strict: bool = False) -> list[Finding]:
    findings = [f for rule in rules for f in rule(subject)]
    if strict:
        findings = [Finding(ERROR, f.rule, f.where, f.message + " (--strict)", f.fix) if f.severity == WARNING
                    else f for f in findings]
    return sorted(findings, key=lambda f: _ORDER[f.severity])


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]
