"""A project's tasks.py run as `bin/invoke` runs it, without paying an interpreter's start and the library's
imports for every run: a task server (a Python process started once) imports tasks.py and what it imports,
and each run is a process forked from it that executes the project's tasks.py as __main__ (the project's own
copy when a test made one) on its own command line, environment and working folder, with its own stdout,
stderr and exit code. From the script on, a run is the user's; what it costs is the task's own work
(milliseconds for a refused argument, against half a second of start-up).

What differs is only what happens before the script: the interpreter's start and the first import of each
library module. tests/unit/test_forked_tasks.py runs commands both ways and checks that they say the same,
and the tests that need a process exactly as a shell starts it (start-up time, signals) start one."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import kiln

ROOT = Path(__file__).resolve().parent.parent


class TaskServer:
    """One server process; runs go one at a time (use one server per thread for runs side by side)."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # unbuffered: a line read is all that is taken from the pipe, so select() sees what is left in it
        self._proc = subprocess.Popen([sys.executable, "-c", "from tests.forked_tasks import serve; serve()"],
                                      cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self._lock = threading.Lock()
        self._folder = tempfile.TemporaryDirectory(prefix="kiln-task-server-")

    def __enter__(self) -> "TaskServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._proc.stdout.close()
        self._folder.cleanup()

    def invoke(self, *args: str, root: Path = ROOT, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 90) -> subprocess.CompletedProcess:
        """As tests.conftest.invoke: root's tasks.py with args, in cwd (default root); env adds to (or overrides)
        this process's environment. A run still going after timeout is killed and raises TimeoutExpired."""
        out, err = Path(self._folder.name, "stdout"), Path(self._folder.name, "stderr")
        request = {"script": str(root / "tasks.py"), "argv": list(args), "cwd": str(cwd or root),
                   "env": {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, "out": str(out), "err": str(err)}
        with self._lock:
            data = json.dumps(request).encode() + b"\n"
            while data:
                data = data[self._proc.stdin.write(data):]
            pid = json.loads(self._proc.stdout.readline())["pid"]
            if not self._answered_within(timeout):
                os.kill(pid, signal.SIGKILL)
                self._proc.stdout.readline()
                raise subprocess.TimeoutExpired([request["script"], *args], timeout)
            code = json.loads(self._proc.stdout.readline())["code"]
            return subprocess.CompletedProcess([request["script"], *args], code, out.read_text(), err.read_text())

    def _answered_within(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self._proc.stdout], [], [], left)[0]:
                return True
        return False


_TERMINAL = ("rich.box", "rich.console", "rich.progress", "rich.table", "rich.text")   # what console.py draws with


def _preload() -> None:
    """tasks.py and every library module a task may import, imported once (a module that cannot be is left
    to the run that needs it, to fail there as it would)."""
    import tasks  # noqa: F401

    for name in [*(m.name for m in pkgutil.walk_packages(kiln.__path__, "kiln.")), *_TERMINAL]:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            pass


def serve() -> None:
    """The server's loop: one JSON request a line on stdin; answers the forked run's pid, then its exit code."""
    _preload()

    for line in sys.stdin.buffer:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run(**request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


def _run(script: str, argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the forked run: the script as `python SCRIPT ARGS` runs it, on this environment and folder."""
    try:
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None   # read from TMPDIR again when first asked, as in a new process
        os.chdir(cwd)
        for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(name, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
        sys.argv, sys.path[0] = [script, *argv], os.path.dirname(script)
        for name in ("tasks", "console"):   # the script's own folder holds these: imported from there afresh
            sys.modules.pop(name, None)
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter makes of a SystemExit at the top: None is 0, a message is printed and gives 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1
