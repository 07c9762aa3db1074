"""Mutation pass over kiln's rules: does some test fail when a rule is broken?

Each mutant of bench/mutants.yaml (a file, an exact text in it, what replaces that text, the rule it
breaks, the tests that should catch it) is applied alone to a copy of the tree, and the tests it names run
there. Verdicts: killed (a named test failed or timed out), survived (they all passed), not-applicable
(the text is not in the file exactly once: the code moved on and the entry needs updating), invalid (the
mutated Python does not compile: the entry is wrong, not the tests). The kill rate is killed over killed +
survived. The working tree is only ever read: every mutant lives in a temporary copy, removed at the end,
also on Ctrl-C. Tests under tests/engine or tests/slow run under the shared engine lock.

Usage: .venv/bin/python bench/mutants.py [--only ID ...] [--list] [--json FILE] [--goal 0.95] [--file YAML]
Exit 0 when the kill rate reaches the goal and every entry applies, 1 otherwise, 2 on a bad mutation list.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ENGINE_LOCK = "/tmp/kiln-engine.lock"       # shared with every other user of the Docker engine
ENGINE_TESTS = ("tests/engine", "tests/slow")
TIMEOUT_S = 600
FIELDS = {"id", "rule", "file", "old", "new", "tests"}
FAILED = re.compile(r"^(FAILED|ERROR) (.+?)(?: - .*)?$", re.M)


@dataclass
class Mutant:
    id: str
    rule: str
    file: str
    old: str
    new: str
    tests: list[str]
    verdict: str = ""
    caught_by: str = ""
    seconds: float = 0.0
    output: str = field(default="", repr=False)


def load(path: Path) -> tuple[list[Mutant], list[str]]:
    """The mutants and the files none may touch; a bad list is one line and exit 2."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        frozen = list(data.get("frozen") or [])
        mutants = [Mutant(**{k: entry[k] for k in FIELDS}) for entry in data["mutants"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        sys.exit(f"error: {path}: not a mutation list ({type(exc).__name__}: {exc}); see the entries' fields: "
                 f"{', '.join(sorted(FIELDS))}")
    problems = [f"{m.id}: {m.file} is frozen" for m in mutants if m.file in frozen]
    problems += [f"{m.id}: given twice" for i, m in enumerate(mutants) if m.id in [o.id for o in mutants[:i]]]
    problems += [f"{m.id}: old and new are the same" for m in mutants if m.old == m.new]
    problems += [f"{m.id}: names no tests" for m in mutants if not m.tests]
    if problems:
        sys.exit(f"error: {path}: {'; '.join(problems)}")
    return mutants, frozen


def copy_tree(dest: Path) -> None:
    """Every file git tracks or would track (what the working tree holds now, edits included), and the venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())


def run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[int | None, str]:
    """pytest's exit code (None on timeout) and its output, run in the copy."""
    command = [str(tree / ".venv" / "bin" / "python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    if any(t.startswith(ENGINE_TESTS) for t in tests):
        command = ["flock", ENGINE_LOCK, *command]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return None, proc.communicate()[0]
    finally:
        if proc.poll() is None:  # Ctrl-C: the tests go with the runner
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def judge(mutant: Mutant, tree: Path, timeout: float) -> None:
    path = tree / mutant.file
    original = path.read_text(encoding="utf-8")
    count = original.count(mutant.old)
    if count != 1:
        mutant.verdict, mutant.caught_by = "not-applicable", f"the text occurs {count} times in {mutant.file}"
        return
    mutated = original.replace(mutant.old, mutant.new)
    if path.suffix == ".py":
        try:
            compile(mutated, str(path), "exec")
        except SyntaxError as exc:
            mutant.verdict, mutant.caught_by = "invalid", f"does not compile: {exc.msg} (line {exc.lineno})"
            return
    path.write_text(mutated, encoding="utf-8")
    started = time.monotonic()
    try:
        code, mutant.output = run_tests(tree, mutant.tests, timeout)
    finally:
        path.write_text(original, encoding="utf-8")
        mutant.seconds = time.monotonic() - started
    if code is None:
        mutant.verdict, mutant.caught_by = "killed", f"timed out after {timeout:.0f} s"
    elif code == 0:
        mutant.verdict = "survived"
    elif code == 1:
        found = FAILED.search(mutant.output)
        mutant.verdict, mutant.caught_by = "killed", found[2] if found else "a test failed"
    else:  # 2: interrupted or collection error, 3: internal error, 4: usage, 5: no tests collected
        mutant.verdict, mutant.caught_by = "error", f"pytest exit {code}: " + _last_line(mutant.output)


def check(mutants: list[Mutant]) -> int:
    """Each entry's text occurs once in the working tree's file and the mutated file compiles (nothing runs)."""
    bad = 0
    for m in mutants:
        text = (ROOT / m.file).read_text(encoding="utf-8") if (ROOT / m.file).is_file() else ""
        problem = f"the text occurs {text.count(m.old)} times" if text.count(m.old) != 1 else ""
        if not problem and m.file.endswith(".py"):
            try:
                compile(text.replace(m.old, m.new), m.file, "exec")
            except SyntaxError as exc:
                problem = f"does not compile: {exc.msg} (line {exc.lineno})"
        missing = [t for t in m.tests if not (ROOT / t.split("::")[0]).is_file()]
        problem = problem or (f"no test file {missing[0]}" if missing else "")
        if problem:
            bad += 1
            print(f"{m.id}: {m.file}: {problem}")
    print(f"{len(mutants) - bad} of {len(mutants)} entries apply")
    return 1 if bad else 0


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def baseline(tree: Path, mutants: list[Mutant], timeout: float) -> None:
    """Every named test passes on the unmutated copy, or no verdict would mean anything."""
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    print(f"baseline: {len(tests)} test selections on the unmutated tree ...", flush=True)
    code, out = run_tests(tree, tests, timeout * 2)
    if code != 0:
        failed = ", ".join(m[2] for m in FAILED.finditer(out)) or _last_line(out)
        sys.exit(f"error: the named tests do not pass on the unmutated tree (pytest exit {code}): {failed}")


def table(mutants: list[Mutant]) -> str:
    width = max(len(m.id) for m in mutants)
    rows = [f"{'mutant':<{width}}  {'verdict':<14}  {'s':>5}  rule / caught by"]
    for m in mutants:
        rows.append(f"{m.id:<{width}}  {m.verdict:<14}  {m.seconds:5.0f}  {m.rule}")
        if m.caught_by:
            rows.append(f"{'':<{width}}  {'':<14}  {'':>5}    -> {m.caught_by}")
    return "\n".join(rows)


def summary(mutants: list[Mutant]) -> tuple[float, str]:
    counts = {v: sum(m.verdict == v for m in mutants) for v in ("killed", "survived", "not-applicable", "invalid", "error")}
    judged = counts["killed"] + counts["survived"]
    rate = counts["killed"] / judged if judged else 0.0
    others = ", ".join(f"{n} {v}" for v, n in counts.items() if n and v not in ("killed", "survived"))
    return rate, f"kill rate: {counts['killed']} of {judged} killed ({rate:.1%}), {counts['survived']} survived" + \
        (f"; {others}" if others else "")


def _interruptible() -> None:
    """Ctrl-C also when started in the background (which inherits SIGINT ignored), and a plain `kill`, end
    the run the same way: the tests stopped, the copy removed."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/mutants.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=ROOT / "bench" / "mutants.yaml", help="the mutation list")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="only check that every entry applies and compiles")
    parser.add_argument("--json", type=Path, help="write every verdict (and the tests' output) here")
    parser.add_argument("--goal", type=float, default=0.95, help="the kill rate to reach (default 0.95)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per mutant's tests")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the named tests")
    args = parser.parse_args(argv)
    mutants, _ = load(args.file)
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in mutants})
        if unknown:
            sys.exit(f"error: --only: no mutant {', '.join(unknown)} in {args.file}")
        mutants = [m for m in mutants if m.id in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.id}: {m.file}: {m.rule}")
        return 0
    if args.check:
        return check(mutants)
    _interruptible()
    tree = Path(tempfile.mkdtemp(prefix="kiln-mutants-"))
    try:
        copy_tree(tree)
        if not args.no_baseline:
            baseline(tree, mutants, args.timeout)
        for i, mutant in enumerate(mutants, 1):
            judge(mutant, tree, args.timeout)
            print(f"[{i}/{len(mutants)}] {mutant.id}: {mutant.verdict} ({mutant.seconds:.0f} s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted: the working tree was never changed; the copy is removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    print(table(mutants))
    rate, line = summary(mutants)
    print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{k: v for k, v in m.__dict__.items()} for m in mutants], indent=2) + "\n")
    applies = all(m.verdict in ("killed", "survived") for m in mutants)
    return 0 if rate >= args.goal and applies else 1


if __name__ == "__main__":
    sys.exit(main())
