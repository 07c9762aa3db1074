"""A busy machine on purpose: a few Python processes spinning beside a test, each ending by itself after a
fixed time and all stopped when the test leaves the block, however it leaves it."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def cpu_burner(processes: int | None = None, seconds: float = 120.0) -> Iterator[list[subprocess.Popen]]:
    """Two spinners per CPU by default (the machine's CPUs all busy, with a queue); bounded by `seconds`."""
    count = processes if processes is not None else 2 * (os.cpu_count() or 1)
    burners = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(count)]
    try:
        yield burners
    finally:
        for proc in burners:
            proc.kill()
        for proc in burners:
            proc.wait()
