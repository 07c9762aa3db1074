"""Walking a ComfyUI launch line as argparse would, against one version's flag table."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from kiln.data.tables import FlagSpec, FlagTable

_HOST_PORT = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d+)$")


@dataclass
class Problem:
    flag: str
    message: str
    fix: str


@dataclass
class Parsed:
    flags: list[tuple[str, str | None]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def parse(tokens: list[str], table: FlagTable) -> Parsed:
    """Walk a ComfyUI argument list as argparse would, collecting one problem per bad flag."""
    out, i = Parsed(), 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, inline = token.partition("=")
        if not token.startswith("--"):
            out.problems.append(Problem(token, f"'{token}' is not a flag and no flag before it takes a value",
                                        "remove it or attach it to the flag that needs it"))
            i += 1
            continue
        values, i = _values(tokens, i + 1, table.flags.get(name), inline if eq else None)
        problem = _check(name, values, table)
        if problem:
            out.problems.append(problem)
        else:
            out.flags.append((name, values[0] if values else None))
    return out


def _values(tokens: list[str], i: int, spec: FlagSpec | None, inline: str | None) -> tuple[list[str], int]:
    if inline is not None:
        return [inline], i
    # a switch followed by a bare word collects it too, so the problem names the switch
    takes = spec.takes if spec else "optional"
    start = i
    limit = len(tokens) if takes in ("list", "any") else min(i + 1, len(tokens))
    while i < limit and not tokens[i].startswith("--"):
        i += 1
    return tokens[start:i], i


def _check(name: str, values: list[str], table: FlagTable) -> Problem | None:
    spec = table.flags.get(name)
    if spec is None:
        return _unknown(name, table)
    if name == "--listen" and values and _HOST_PORT.match(values[0]):
        host, port = values[0].rsplit(":", 1)
        return Problem(name, f"'--listen {values[0]}' takes an address only: ComfyUI {table.version} would try "
                             f"to bind the literal host '{values[0]}'", f"write --listen {host} --port {port}")
    return _shape(name, spec, values, table.version)


def _unknown(name: str, table: FlagTable) -> Problem:
    if name in table.never_existed:
        return Problem(name, f"{name} is not a ComfyUI flag in any version (ComfyUI exits on it)",
                       table.never_existed[name])
    close = difflib.get_close_matches(name, list(table.flags), n=1)
    hint = f"did you mean {close[0]} ({table.flags[close[0]].help})?" if close else \
        "see `python main.py --help` for that version"
    return Problem(name, f"{name} is not a ComfyUI {table.version} flag (ComfyUI exits on unknown flags)", hint)


def _shape(name: str, spec: FlagSpec, values: list[str], version: str) -> Problem | None:
    takes = spec.takes
    if takes == "none" and values:
        return Problem(name, f"{name} takes no value in ComfyUI {version}, got '{values[0]}'",
                       f"write {name} alone" + (" (feature names for --fast need a later ComfyUI)"
                                                if name == "--fast" else ""))
    if takes in ("int", "float", "str", "choice", "list") and not values:
        default = f" (ComfyUI's default: {spec.default})" if spec.default is not None else ""
        return Problem(name, f"{name} needs a value", f"write {name} <{spec.type or takes}>{default}")
    bad = [v for v in values if spec.choices and v not in [str(c) for c in spec.choices]]
    if bad:
        return Problem(name, f"{name} '{bad[0]}' is not one of {', '.join(map(str, spec.choices))}",
                       "pick from those")
    kind = spec.type or takes
    if values and kind in ("int", "float") and not _number(values[0], kind):
        noun = "an integer" if kind == "int" else "a number"
        return Problem(name, f"{name} needs {noun}, got '{values[0]}'", f"write {noun}")
    return None


def _number(text: str, kind: str) -> bool:
    try:
        int(text) if kind == "int" else float(text)
    except ValueError:
        return False
    return True
