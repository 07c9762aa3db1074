"""Bad input at every edge, by kind. Every task that takes a kind of input (a port, a registry host, an image
reference, an HTTP endpoint, a file or folder to read or write, a cache folder), from a flag or from the
environment, is run through the real command line with hostile values of it: each answer is exit 2 and
exactly one line on stderr that names the input and says what is wrong with it, never a traceback.

Anything a removed check lets through must still fail fast and visibly here: the engine is unreachable
(DOCKER_HOST points nowhere), so the failure is some other line that does not name the input.

Every case runs in a process forked from a task server that imported tasks.py once (tests/forked_tasks.py):
the command line, environment and streams are the case's own, and the task's code path is the real one.
One case of every task's row also runs in a fresh `tasks.py` process, as a user starts it, and must say
exactly what the forked run said."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.forked_tasks import TaskServer

DIGEST = "sha256:" + "0" * 64
V = "{value}"   # where the hostile value goes in a row's arguments or environment

# kind -> the tasks taking it: (arguments, environment, the name the error line must carry)
TAKERS = {
    "port": [
        (["run", "--gpu", "4090", "--port", V], {}, "--port"),
        (["build", "--gpu", "4090"], {"KILN_WHEEL_PORT": V}, "KILN_WHEEL_PORT"),
    ],
    "registry_host": [
        (["publish", "--registry", V + "/team", "--gpu", "4090"], {}, "--registry"),
        (["verify", "--reference", V + "/team/comfyui@" + DIGEST], {}, "--reference"),
    ],
    "image_by_digest": [
        (["verify", "--reference", V], {}, "--reference"),
    ],
    "image_by_tag": [
        (["smoke", "--gpu", "4090", "--image", V], {}, "--image"),
        (["run", "--gpu", "4090", "--image", V], {}, "--image"),
        (["report", "--json", "{file}", "--html", "{out}", "--image", V], {}, "--image"),
    ],
    "http_endpoint": [
        (["models.fetch", "--gpu", "4090", "--image", "z-image-turbo", "--to", "{folder}"], {"HF_ENDPOINT": V},
         "HF_ENDPOINT"),
        (["base"], {"KILN_DEBIAN_MIRROR": V}, "KILN_DEBIAN_MIRROR"),
    ],
    "file_written": [
        (["smoke", "--gpu", "4090", "--host", "--json", V], {}, "--json"),
        (["smoke", "--gpu", "4090", "--host", "--html", V], {}, "--html"),
        (["report", "--json", "{file}", "--html", V], {}, "--html"),
        (["host.check", "--gpu", "4090", "--json", V], {}, "--json"),
    ],
    "folder_written": [
        (["render", "--gpu", "4090", "--out", V], {}, "--out"),
        (["render", "--portable", "--gpu", "4090", "--out", V], {}, "--out"),
        (["schema", "--out", V], {}, "--out"),
        (["deploy", "--gpu", "4090", "--target", "compose", "--out", V], {}, "--out"),
        (["models.synth", "--out", V, "--only", "vae"], {}, "--out"),
    ],
    "file_read": [
        (["report", "--json", V, "--html", "{out}"], {}, "--json"),
        (["verify", "--reference", "127.0.0.1:1/team/comfyui@" + DIGEST, "--key", V], {}, "--key"),
        (["publish", "--registry", "127.0.0.1:1/team", "--gpu", "4090", "--sign-key", V], {}, "--sign-key"),
        (["publish", "--registry", "127.0.0.1:1/team", "--gpu", "4090"], {"KILN_SIGNING_KEY": V}, "KILN_SIGNING_KEY"),
        (["build", "--gpu", "4090", "--ca-bundle", V], {}, "--ca-bundle"),
        (["build", "--gpu", "4090"], {"KILN_CA_BUNDLE": V}, "KILN_CA_BUNDLE"),
        (["render", "--portable", "--gpu", "4090", "--ca-bundle", V, "--out", "{out}"], {}, "--ca-bundle"),
        (["render", "--portable", "--gpu", "4090", "--out", "{out}"], {"KILN_CA_BUNDLE": V}, "KILN_CA_BUNDLE"),
    ],
    "cache_used": [
        (["run", "--gpu", "4090", "--cache", V], {}, "--cache"),
        (["smoke", "--gpu", "4090", "--cache", V], {}, "--cache"),
        (["host.check", "--gpu", "4090", "--cache", V], {}, "--cache"),
        (["models.fetch", "--gpu", "4090", "--image", "z-image-turbo", "--to", V], {}, "--to"),
        (["build", "--gpu", "4090", "--bake-models", "--models-from", V], {}, "--models-from"),
    ],
    "cache_mounted": [
        (["run", "--gpu", "4090", "--cache", V], {}, "--cache"),
        (["smoke", "--gpu", "4090", "--cache", V], {}, "--cache"),
    ],
    "cache_made": [
        (["provision.cache", "--path", V], {}, "--path"),
        (["build", "--gpu", "4090"], {"KILN_WHEEL_CACHE": V}, "KILN_WHEEL_CACHE"),
        (["build", "--gpu", "4090"], {"KILN_SOURCE_CACHE": V}, "KILN_SOURCE_CACHE"),
        (["render", "--portable", "--gpu", "4090", "--out", "{out}"], {"KILN_SOURCE_CACHE": V}, "KILN_SOURCE_CACHE"),
    ],
}

# kind -> hostile values, each with what the error line must say about it; {name} is a place `_places` makes
LONG = "x" * 300   # longer than a file name may be: the system refuses even to look
HOSTILE = {
    "port": [("0", "out of range"), ("65536", "out of range"), ("8o80", "not a port number"),
             ("-1", "not a port number"), ("+80", "not a port number"), ("\u0668\u0660", "not a port number"),
             ("", "not a port number")],
    "registry_host": [("user:secret@reg.example", "user name or password"), ("reg.example:0", "out of range"),
                      ("reg.example:65536", "out of range"), ("reg.example:8o80", "not a port number"),
                      ("reg example", "spaces"), ("r\u00e9g.example", "non-ASCII"), ("a..b", "not a host name"),
                      ("-reg.example", "not a host name"), ("reg.example?x=1", "more than a host"),
                      ("[::1]:5000", "not a host name")],
    "image_by_digest": [("reg.example/team/comfyui@sha256:abc", "not a digest"),
                        ("reg.example/team/comfyui@sha256:" + "A" * 64, "not a digest"),
                        ("reg.example/team/comfyui@md5:" + "0" * 32, "not a digest"),
                        ("reg.example/team/comfyui:v1", "is not HOST[:PORT]/NAME@sha256"),
                        ("comfyui@" + DIGEST, "is not HOST[:PORT]/NAME@sha256"),
                        ("team/comfyui@" + DIGEST, "not a registry host"),
                        ("reg.example/Team/comfyui@" + DIGEST, "not a repository name"),
                        ("user:secret@reg.example/team/comfyui@" + DIGEST, "user name or password"),
                        ("reg.example:99999/team/comfyui@" + DIGEST, "out of range")],
    "image_by_tag": [("kiln/comfyui:bad tag", "spaces"), ("kiln/comfyui:-x", "not a tag"),
                     ("Kiln/comfyui:v1", "not a repository name"), ("kiln/comfyui:v1@sha256:abc", "not a digest"),
                     ("user:secret@reg.example/kiln/comfyui:v1", "user name or password"),
                     ("reg.example:99999/kiln/comfyui:v1", "out of range"),
                     ("kiln/comfyui:v1\x1b[2J", "control characters")],
    "http_endpoint": [("file:///etc/passwd", "not an http(s) URL"), ("ftp://mirror.example/hf", "not an http(s) URL"),
                      ("https://user:secret@mirror.example", "credentials"),
                      ("https://mirror.example:99999", "out of range"), ("https://mirror.example:0", "out of range"),
                      ("https://mirror.example:8o80", "not a port number"), ("http://mirror example", "spaces"),
                      ("https://m\u00efrror.example", "non-ASCII"), ("https://mirror.example/?a=b", "query"),
                      ("javascript:alert(1)", "not an http(s) URL"), ("http://a..b", "not a host name"),
                      ("https://[::1", "not a URL"), ("http://[::1]:99999", "out of range"),
                      ("http://[fe80::zz]", "not a URL"), ("http://[::1]x", "not a host"),
                      ("mirror.example", "not an http(s) URL")],
    "file_written": [("{folder}", "is a folder"), ("{link_to_file}", "symbolic link"), ("{dangling}", "symbolic link"),
                     ("{fifo}", "not a regular file"), ("{file}/x.json", "is not a folder"),
                     ("{missing}/x.json", "does not exist"), ("{unwritable}/x.json", "not writable"),
                     ("{folder}/../file/x.json", "is not a folder"), ("{folder}/" + LONG, "cannot look at"),
                     ("", "not a usable path")],
    "folder_written": [("{file}", "exists and is not a folder"), ("{link_to_folder}", "symbolic link"),
                       ("{link_to_file}", "symbolic link"), ("{dangling}", "symbolic link"),
                       ("{file}/sub", "is not a folder, so"), ("{unwritable}/out", "not writable"),
                       ("{folder}/../file/sub", "is not a folder, so"), ("{folder}/" + LONG, "cannot look at"),
                       ("", "not a usable path")],
    "file_read": [("{missing}", "does not exist"), ("{folder}", "is a folder"), ("{dangling}", "link to nothing"),
                  ("{fifo}", "not a regular file"), ("{folder}/../missing", "does not exist"),
                  ("{folder}/" + LONG, "cannot look at"), ("", "not a usable path")],
    "cache_used": [("{file}", "is not a folder"), ("{missing}", "does not exist"), ("{dangling}", "link to nothing"),
                   ("{link_to_file}", "is not a folder"), ("{models_file}", "models exists and is not a folder"),
                   ("{folder}/" + LONG, "cannot look at"), ("", "not a usable path")],
    "cache_mounted": [("{folder}", "is not writable by the image's user (uid 10001)")],
    "cache_made": [("{file}", "exists and is not a folder"), ("{file}/sub", "is not a folder, so"),
                   ("{dangling}", "link to nothing"), ("{link_to_file}", "exists and is not a folder"),
                   ("{unwritable}/cache", "not writable"), ("{folder}/" + LONG, "cannot look at")],
}



def _case_id(kind: str, row: tuple, value: str) -> str:
    """The command as a user would type it, the hostile value in place (cut short)."""
    shown = repr(value[:60])
    env = " ".join(f"{k}={v.replace(V, shown)}" for k, v in row[1].items())
    return f"{kind}: {env + ' ' if env else ''}{' '.join(row[0]).replace(V, shown)}"


CASES = [pytest.param(kind, row, value, reason, id=_case_id(kind, row, value))
         for kind, rows in TAKERS.items() for row in rows for value, reason in HOSTILE[kind]
         if value or not row[1]]   # an empty variable counts as unset: nothing to refuse


def _sample() -> list:
    """One case of every task's row, in a fresh process too: the i-th row takes its kind's i-th value (the
    values taken in turn), so the rows of a kind show different values end to end."""
    picked, count = [], 0
    for kind, rows in TAKERS.items():
        for row in rows:
            values = [v for v in HOSTILE[kind] if v[0] or not row[1]]
            value, reason = values[count % len(values)]
            picked.append(pytest.param(kind, row, value, reason, id=_case_id(kind, row, value)))
            count += 1
    return picked


SAMPLE = _sample()


def _unwritable(tmp_path: Path) -> Path | None:
    """A folder this process cannot write to: a read-only one, or (as root, who ignores modes) /proc/sys."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/proc/sys")):
        if candidate.is_dir() and not os.access(candidate, os.W_OK):
            return candidate
    return None


def _places(tmp_path: Path) -> dict:
    """The places hostile path values name, made afresh for each case."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link-to-file").symlink_to(tmp_path / "file")
    (tmp_path / "link-to-folder").symlink_to(tmp_path / "folder")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "models-file").mkdir()
    (tmp_path / "models-file" / "models").write_text("x")
    return {"models_file": tmp_path / "models-file", "file": tmp_path / "file", "folder": tmp_path / "folder", "link_to_file": tmp_path / "link-to-file",
            "link_to_folder": tmp_path / "link-to-folder", "dangling": tmp_path / "dangling",
            "missing": tmp_path / "missing", "fifo": tmp_path / "fifo", "out": tmp_path / "out.html",
            "unwritable": _unwritable(tmp_path)}


@dataclass(frozen=True)
class Outcome:
    result: subprocess.CompletedProcess
    before: list[str]   # names in the case's folder before the run
    after: list[str]    # and after it
    folder: Path


def _fresh(*args, **kwargs) -> subprocess.CompletedProcess:
    return invoke(*args, fresh=True, **kwargs)


def _run(row: tuple, value: str, tmp_path: Path, run=_fresh) -> Outcome | None:
    """The case run by `run` (a fresh process, or a TaskServer's invoke), or None when this host has no
    unwritable folder to name."""
    args, env, _ = row
    places = _places(tmp_path)
    if "{unwritable}" in value and places["unwritable"] is None:
        return None
    argv = [a.replace(V, value).format(**places) for a in args]
    environ = {k: v.replace(V, value).format(**places) for k, v in env.items()}
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        result = run(*argv, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", **environ}, timeout=90)
    except subprocess.TimeoutExpired as exc:   # e.g. a report opened on a named pipe waits for a reader forever
        result = subprocess.CompletedProcess(exc.cmd, -1, "", f"still running after {exc.timeout} s")
    (tmp_path / "read-only").chmod(0o755)
    return Outcome(result, before, sorted(p.name for p in tmp_path.iterdir()), tmp_path)


def _cases_of(params: dict) -> dict[str, tuple]:
    """Case id -> (row, value) of the cases a test's parameters name: its own, or (a value and no row) the
    value's case in every row of cache_used."""
    if "row" in params:
        return {_case_id(params["kind"], params["row"], params["value"]): (params["row"], params["value"])}
    return {_case_id("cache_used", row, params["value"]): (row, params["value"]) for row in TAKERS["cache_used"]}


def _chosen(request, *tests: str) -> dict[str, tuple]:
    """Case id -> (row, value) of every selected test of this module that runs cases (of these tests)."""
    return {case: spec for item in request.session.items
            if item.module is request.module and hasattr(item, "callspec") and (not tests or item.originalname in tests)
            for case, spec in _cases_of(item.callspec.params).items()}


@pytest.fixture(scope="module")
def forked(request, tmp_path_factory) -> dict[str, Outcome | None]:
    """Every selected case, each forked from a task server; one server per core, each taking its share."""
    cases = sorted(_chosen(request).items())
    workers = max(1, min(os.cpu_count() or 1, len(cases)))

    def share(n: int) -> dict:
        with TaskServer() as server:
            return {case: _run(row, value, tmp_path_factory.mktemp("case"), server.invoke)
                    for case, (row, value) in cases[n::workers]}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return {case: outcome for done in pool.map(share, range(workers)) for case, outcome in done.items()}


@pytest.fixture(scope="module")
def fresh(request, tmp_path_factory) -> dict[str, Outcome | None]:
    """The selected cases of SAMPLE, each in a fresh process as a user runs it, all at once (mostly waiting)."""
    cases = _chosen(request, "test_a_fresh_process_says_what_the_forked_run_said")
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        futures = {case: pool.submit(_run, row, value, tmp_path_factory.mktemp("fresh")) for case, (row, value) in
                   cases.items()}
        return {case: future.result() for case, future in futures.items()}


def _assert_refused(outcome: Outcome | None, row: tuple, reason: str) -> None:
    if outcome is None:
        pytest.skip("no folder here is unwritable to this user")
    result = outcome.result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert row[2] in lines[0] and reason in lines[0], lines[0]
    assert "secret" not in lines[0]   # a password in a hostile value is never repeated back
    assert outcome.after == outcome.before   # nothing written beside the hostile places


@pytest.mark.parametrize("kind, row, value, reason", CASES)
def test_hostile_input_is_one_line_naming_it(kind, row, value, reason, forked):
    _assert_refused(forked[_case_id(kind, row, value)], row, reason)


@pytest.mark.parametrize("value, reason", HOSTILE["cache_used"], ids=[repr(v[:60]) for v, _ in HOSTILE["cache_used"]])
def test_every_task_refuses_a_bad_cache_in_the_same_words(value, reason, forked):
    """`run`, `smoke`, `host.check`, `models.fetch` and `build --bake-models` take a cache through one check."""
    said = set()
    for row in TAKERS["cache_used"]:
        outcome = forked[_case_id("cache_used", row, value)]
        if outcome is None:
            pytest.skip("no folder here is unwritable to this user")
        said.add(_seen(outcome)[2].replace(row[2], "<flag>"))
    assert len(said) == 1 and reason in said.pop()


def _seen(outcome: Outcome) -> tuple:
    """What a user sees of a run, with the case's own folder written as one name."""
    result, folder = outcome.result, str(outcome.folder)
    return result.returncode, result.stdout.replace(folder, "<case>"), result.stderr.replace(folder, "<case>")


@pytest.mark.parametrize("kind, row, value, reason", SAMPLE)
def test_a_fresh_process_says_what_the_forked_run_said(kind, row, value, reason, forked, fresh):
    case = _case_id(kind, row, value)
    _assert_refused(fresh[case], row, reason)
    assert _seen(fresh[case]) == _seen(forked[case])


def test_every_kind_has_takers_and_values():
    assert set(TAKERS) == set(HOSTILE)
    assert all(TAKERS[kind] and HOSTILE[kind] for kind in TAKERS)
    assert len({case.id for case in CASES}) == len(CASES)   # outcomes are looked up by case id
    assert {case.id for case in SAMPLE} <= {case.id for case in CASES}
    assert len(SAMPLE) == sum(len(rows) for rows in TAKERS.values())
