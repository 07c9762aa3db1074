"""The project's tasks run as `bin/invoke` runs them, without paying an interpreter's start and the imports
for every run: a task server (a Python process started once) imports tasks.py, and each run is a process
forked from it that runs KilnProgram on its own command line, environment and working folder, with its own
stdout, stderr and exit code. From the command line on, a run takes the real task's code path; what it
costs is the task's own work (milliseconds for a refused argument, against half a second of start-up).

A fresh process (`tests.conftest.invoke`) is still what proves a task end to end: tests that run many
cases through a server run some of them in fresh processes too, and check that both say the same."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

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

    def invoke(self, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
               timeout: float = 90) -> subprocess.CompletedProcess:
        """Like tests.conftest.invoke on the project itself: env adds to (or overrides) this process's
        environment. A run still going after timeout is killed and raises subprocess.TimeoutExpired."""
        out, err = Path(self._folder.name, "stdout"), Path(self._folder.name, "stderr")
        request = {"argv": list(args), "env": {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                   "cwd": str(cwd), "out": str(out), "err": str(err)}
        with self._lock:
            data = json.dumps(request).encode() + b"\n"
            while data:
                data = data[self._proc.stdin.write(data):]
            pid = json.loads(self._proc.stdout.readline())["pid"]
            if not self._answered_within(timeout):
                os.kill(pid, signal.SIGKILL)
                self._proc.stdout.readline()
                raise subprocess.TimeoutExpired(["tasks.py", *args], timeout)
            code = json.loads(self._proc.stdout.readline())["code"]
            return subprocess.CompletedProcess(["tasks.py", *args], code, out.read_text(), err.read_text())

    def _answered_within(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self._proc.stdout], [], [], left)[0]:
                return True
        return False


def serve() -> None:
    """The server's loop: one JSON request a line on stdin; answers the forked run's pid, then its exit code."""
    import tasks  # noqa: F401 - imported once here, inherited by every run

    for line in sys.stdin.buffer:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run(**request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


def _run(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the forked run: the program tasks.py runs as __main__, on this command line and environment."""
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(name, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
        import tasks

        tasks.KilnProgram(namespace=tasks.ns, binary="invoke").run([str(ROOT / "tasks.py"), *argv])
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
