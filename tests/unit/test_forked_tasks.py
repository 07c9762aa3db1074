"""A task forked from the task server (tests/forked_tasks.py, what tests.conftest.invoke does by default) says
what the same command says in a fresh interpreter: the same exit code, stdout and stderr, for the project's
tasks and a project copy's, and the same surroundings for the script (argv, import path, working folder,
environment, temp folder, how an uncaught exception or a message exit ends)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, invoke

PROBE = '''import json, os, sys, tempfile
if sys.argv[1:2] == ["raise"]:
    raise RuntimeError("uncaught")
if sys.argv[1:2] == ["exit"]:
    sys.exit("a message exit")
print(json.dumps({"name": __name__, "file": __file__, "argv": sys.argv, "path": sys.path, "cwd": os.getcwd(),
                  "temp": tempfile.gettempdir(), "env": os.environ.get("KILN_PROBE"), "console": "console" in sys.modules}))
print("on stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]) if sys.argv[1:] else 0)
'''


def _both(*args, root=ROOT, env=None, cwd=None):
    return [invoke(*args, root=root, env=env, cwd=cwd, fresh=fresh) for fresh in (True, False)]


def _seen(result, *places) -> tuple:
    text = [result.stdout, result.stderr]
    for place in places:
        text = [t.replace(str(place), "<place>") for t in text]
    return result.returncode, *text


@pytest.mark.parametrize("args", [("--list",), ("gpus",), ("check", "--gpu", "4090"), ("check", "--gpu", "rtx6090"),
                                  ("lock", "--check"), ("run", "--gpu", "4090", "--port", "0"), ("nosuchtask",)],
                         ids=lambda args: " ".join(args))
def test_a_forked_task_says_what_a_fresh_one_says(args):
    fresh, forked = _both(*args)
    assert _seen(fresh) == _seen(forked)


def test_a_project_copy_runs_its_own_files(project_copy, tmp_path):
    (project_copy / "gpus.yaml").write_text((project_copy / "gpus.yaml").read_text().replace("vram_gb: 24\n", "vram_gb: lots\n", 1))
    fresh, forked = _both("render", "--gpu", "4090", "--out", str(tmp_path / "out"), root=project_copy)
    assert fresh.returncode == 2 and "vram_gb" in fresh.stderr
    assert _seen(fresh) == _seen(forked)


@pytest.mark.parametrize("args, code", [(("3",), 3), (("raise",), 1), (("exit",), 1)], ids=["code", "raise", "exit"])
def test_the_script_runs_in_the_same_surroundings(tmp_path, args, code):
    (tmp_path / "tasks.py").write_text(PROBE)
    (tmp_path / "temp").mkdir()
    env = {"KILN_PROBE": "from the test", "TMPDIR": str(tmp_path / "temp")}
    fresh, forked = _both(*args, root=tmp_path, env=env, cwd=ROOT / "docs")
    assert fresh.returncode == code
    assert ("Traceback" in fresh.stderr and "RuntimeError: uncaught" in fresh.stderr) == (args == ("raise",))
    if args == ("raise",):   # the traceback's frames are the interpreter's own business; its last line is not
        assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1] and forked.returncode == code
        return
    assert _seen(fresh) == _seen(forked)
