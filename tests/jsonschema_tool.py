"""check-jsonschema, the tool the tests validate files with, run in this process: the same command line,
output and exit code as the `check-jsonschema` program, without its second or two of start-up (most of
it building the URL grammar its format checks use) for every file checked."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner
from check_jsonschema.cli.main_command import main


def check_jsonschema(*args: str | Path) -> subprocess.CompletedProcess:
    """As `check-jsonschema ARGS` would end: a failure it does not catch is exit code 1, with the error shown."""
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    shown = result.output + (f"\n{result.exception!r}" if result.exit_code and result.exception else "")
    return subprocess.CompletedProcess(["check-jsonschema", *map(str, args)], result.exit_code, shown, "")
