"""`invoke models.fetch` against a real HTTP server on 127.0.0.1 serving generated model files: fetch,
skip, resume after a cut connection or Ctrl-C, hash mismatch, the file lock, free space, the token,
refusals, links and odd files planted in the cache, and bad input. Every run goes through tasks.py as a
user runs it."""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from kiln.errors import KilnError
from kiln.identity import UID
from kiln.models.locking import held
from kiln.models.source import Endpoint, endpoint_from_env
from kiln.models.store import Folder
from tests.conftest import ROOT, invoke
from tests.unit.model_server import ModelServer

REPO, REVISION = "kiln-test/tiny-models", "0123456789abcdef0123456789abcdef01234567"
FILES = (("diffusion_model", "diffusion_models", "dit.safetensors", 3_000_000),
         ("text_encoder", "text_encoders", "encoder.safetensors", 2_200_000),
         ("vae", "vae", "ae.safetensors", 1_700_000))
TOKEN = "hf_kilnTestSecretToken0123456789"
OWNER = UID if os.geteuid() == 0 else os.getuid()


class Models:
    """A project copy with an image spec listing three generated files, the server that serves them and
    an empty cache folder."""

    def __init__(self, root: Path, cache: Path, server: ModelServer, endpoint: ModelServer | None = None):
        self.root, self.cache, self.server = root, cache, server
        self.data = {file: random.Random(file).randbytes(size) for _, _, file, size in FILES}
        models = []
        for role, folder, file, size in FILES:
            path = f"split_files/{folder}/{file}"
            server.files[self.url_path(path)] = self.data[file]
            models.append({"role": role, "folder": folder, "file": file, "size": size,
                           "sha256": hashlib.sha256(self.data[file]).hexdigest(),
                           "source": {"repo": REPO, "revision": REVISION, "path": path}})
        spec = {"name": "tiny", "title": "three generated model files", "server": {"port": 8188}, "models": models}
        (root / "images" / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    @staticmethod
    def url_path(path: str) -> str:
        return f"/{REPO}/resolve/{REVISION}/{path}"

    def path_of(self, file: str) -> str:
        folder = next(f for _, f, name, _ in FILES if name == file)
        return self.url_path(f"split_files/{folder}/{file}")

    def final(self, file: str) -> Path:
        folder = next(f for _, f, name, _ in FILES if name == file)
        return self.cache / "models" / folder / file

    def fetch(self, *extra: str, cache: Path | None = None):
        return invoke("models.fetch", "--gpu", "4090", "--image", "tiny", "--to", str(cache or self.cache), "--plain",
                      *extra, root=self.root)

    def start(self, *extra: str) -> subprocess.Popen:
        """The same command as fetch(), running in the background."""
        cmd = [sys.executable, str(self.root / "tasks.py"), "models.fetch", "--gpu", "4090", "--image", "tiny",
               "--to", str(self.cache), "--plain", *extra]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.root,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})

    def leftovers(self) -> list[str]:
        """Everything in the model folders that is not a model file in its final place."""
        finals = {self.final(file) for _, _, file, _ in FILES}
        kept = finals | {f.with_name(f.name + ".verified") for f in finals if f.is_file()}
        return sorted(str(p.relative_to(self.cache)) for p in (self.cache / "models").rglob("*")
                      if p.is_file() and p not in kept)

    def assert_in_place(self, *files: str) -> None:
        for file in files or self.data:
            final = self.final(file)
            assert hashlib.sha256(final.read_bytes()).digest() == hashlib.sha256(self.data[file]).digest(), file
            assert final.stat().st_uid == OWNER and final.parent.stat().st_uid == OWNER


@pytest.fixture
def server():
    with ModelServer() as srv:
        yield srv


@pytest.fixture
def models(project_copy, tmp_path, server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    return Models(project_copy, cache, server)


def _ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _one_error(result, *fragments: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _row(out: str, file: str) -> str:
    return next(line for line in out.splitlines() if f"/{file} " in line)


def test_fresh_fetch_puts_three_verified_files_in_place_owned_by_the_image_user(models):
    out = _ok(models.fetch())
    models.assert_in_place()
    assert models.leftovers() == []
    for _, _, file, _ in FILES:
        assert "fetched" in _row(out, file) and "hashed" in _row(out, file)
        assert len(models.server.gets(models.path_of(file))) == 1
        assert f"downloaded {file}" in out
    assert (models.cache / "models").stat().st_uid == OWNER
    assert "every sha256 verified: 3 fetched" in out


def test_rerun_skips_verified_files_without_a_request(models):
    _ok(models.fetch())
    before = len(models.server.seen)
    out = _ok(models.fetch())
    assert len(models.server.seen) == before
    for _, _, file, _ in FILES:
        assert "skipped" in _row(out, file) and "record" in _row(out, file)
    assert "0 fetched" in out and "3 already in place" in out


def test_a_changed_file_is_not_passed_off_as_verified(models):
    _ok(models.fetch())
    dit, vae = models.final("dit.safetensors"), models.final("ae.safetensors")
    data = bytearray(dit.read_bytes())
    data[1000] ^= 1
    dit.write_bytes(bytes(data))          # same size, other content
    os.utime(vae)                         # touched only: hashed again, found right
    out = _ok(models.fetch())
    assert "replaced" in _row(out, "dit.safetensors")
    assert len(models.server.gets(models.path_of("dit.safetensors"))) == 2
    assert "skipped" in _row(out, "ae.safetensors") and "hashed" in _row(out, "ae.safetensors")
    assert "record" in _row(out, "encoder.safetensors")
    models.assert_in_place()


def test_a_cut_connection_resumes_with_a_range_request(models):
    path = models.path_of("dit.safetensors")
    models.server.faults.cut_once[path] = 1_300_000
    out = _ok(models.fetch())
    models.assert_in_place()
    ranges = [s.headers.get("range") for s in models.server.gets(path)]
    assert ranges[0] is None and len(ranges) == 2
    offset = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < offset <= 1_300_000
    assert models.server.sent[path] < 2 * len(models.data["dit.safetensors"])
    assert "retry 1/4" in out
    assert models.leftovers() == []


def test_a_server_error_is_retried(models):
    path = models.path_of("ae.safetensors")
    models.server.faults.status_once[path] = 503
    out = _ok(models.fetch())
    assert "HTTP 503" in out and len(models.server.gets(path)) == 2
    models.assert_in_place()


def test_corrupted_content_is_refused_and_deleted(models):
    path = models.path_of("encoder.safetensors")
    models.server.faults.corrupt.add(path)
    line = _one_error(models.fetch(), "text_encoders/encoder.safetensors", "sha256 mismatch")
    expected = hashlib.sha256(models.data["encoder.safetensors"]).hexdigest()
    got = hashlib.sha256(models.server.content(path)).hexdigest()
    assert f"expected {expected}, got {got}" in line
    assert not models.final("encoder.safetensors").exists()
    assert models.leftovers() == []
    models.assert_in_place("dit.safetensors", "ae.safetensors")


def test_a_body_longer_than_the_manifest_size_is_refused_and_deleted(models):
    """A server that sends no length and keeps sending: the fetch stops at the manifest's size."""
    path = models.path_of("ae.safetensors")
    models.server.files[path] = models.data["ae.safetensors"] + b"more" * 250_000
    models.server.faults.no_length.add(path)
    _one_error(models.fetch(), "vae/ae.safetensors", "the server sent more than the manifest's 1700000 bytes; "
               "the download was deleted")
    assert len(models.server.gets(path)) == 1           # not retried: a longer file stays longer
    assert not models.final("ae.safetensors").exists() and models.leftovers() == []


def test_a_content_length_other_than_the_manifest_size_is_refused_before_reading(models):
    path = models.path_of("ae.safetensors")
    models.server.files[path] = models.data["ae.safetensors"][:-1000]
    _one_error(models.fetch(), "vae/ae.safetensors", "the server's file is 1699000 bytes, the manifest says 1700000; "
               "the download was deleted")
    assert len(models.server.gets(path)) == 1
    assert not models.final("ae.safetensors").exists() and models.leftovers() == []


def test_a_resume_from_a_file_of_another_size_is_refused(models):
    """The 206 names the server's whole size: not the manifest's, so resuming cannot make the file."""
    path, data = models.path_of("ae.safetensors"), models.data["ae.safetensors"]
    models.server.files[path] = data[:-1000]
    part = models.final("ae.safetensors").with_name("ae.safetensors.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:500_000])
    _one_error(models.fetch(), "vae/ae.safetensors", "the server's file is 1699000 bytes, the manifest says 1700000")
    assert [s.headers.get("range") for s in models.server.gets(path)] == ["bytes=500000-"]
    assert not part.exists() and not models.final("ae.safetensors").exists()


def test_a_range_answered_from_another_offset_is_not_appended(models):
    path = models.path_of("dit.safetensors")
    models.server.faults.cut_once[path] = 1_300_000
    models.server.faults.range_from_start_once.add(path)
    out = _ok(models.fetch())
    offset = models.server.gets(path)[1].headers["range"].removeprefix("bytes=").removesuffix("-")
    assert f"asked for bytes from {offset}, the server sent from 0" in out
    assert len(models.server.gets(path)) == 3
    models.assert_in_place()


def test_a_partial_longer_than_the_file_is_dropped_and_fetched_again(models):
    part = models.final("ae.safetensors").with_name("ae.safetensors.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(os.urandom(1_700_010))
    for path in (part.parent.parent, part.parent, part):  # as an earlier run leaves them
        os.chown(path, OWNER, OWNER)
    out = _ok(models.fetch())
    assert "fetched" in _row(out, "ae.safetensors")
    assert [s.headers.get("range") for s in models.server.gets(models.path_of("ae.safetensors"))] == [None]
    models.assert_in_place()
    assert models.leftovers() == []


def test_two_entries_for_one_place_are_refused_before_any_download(models):
    spec_file = models.root / "images" / "tiny.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["models"].append({**spec["models"][2], "role": "vae_copy"})
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    _one_error(models.fetch(), "two models go to vae/ae.safetensors", "images/tiny.yaml models")
    assert models.server.seen == []


def test_ctrl_c_keeps_only_resumable_partials_and_the_rerun_resumes(models):
    models.server.faults.hold_after = 1_600_000
    proc = models.start()
    parts = [models.final(file).with_name(file + ".part") for file in models.data]
    deadline = time.monotonic() + 60
    while not all(p.is_file() and p.stat().st_size >= 1 << 20 for p in parts):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    models.server.faults.hold_after = None
    models.server.faults.release.set()
    _one_error(subprocess.CompletedProcess([], proc.returncode, out, err), "interrupted", "kept to resume",
               "dit.safetensors.part")
    assert models.leftovers() == sorted(str(p.relative_to(models.cache)) for p in parts)
    assert not any(models.final(file).exists() for file in models.data)
    out = _ok(models.fetch())
    models.assert_in_place()
    for file in models.data:
        assert "resumed" in _row(out, file)
        assert models.server.gets(models.path_of(file))[-1].headers["range"].startswith("bytes=")
    assert models.leftovers() == []


def test_two_concurrent_fetches_share_one_download(models):
    models.server.faults.hold_after = 100_000
    first = models.start()
    deadline = time.monotonic() + 60
    while len(models.server.seen) < 3:
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = models.start()
    waiting = []
    while len(waiting) < 3:
        line = second.stdout.readline()
        assert line, second.communicate()
        waiting += [line] if "another fetch (pid" in line and "waiting for it to finish" in line else []
    models.server.faults.release.set()
    out_first, err_first = first.communicate(timeout=60)
    out_second, err_second = second.communicate(timeout=60)
    assert first.returncode == 0, out_first + err_first
    assert second.returncode == 0, out_second + err_second
    assert len(models.server.seen) == 3                 # the second process never downloaded
    for file in models.data:
        assert "skipped (by pid" in _row(out_second, file)
    models.assert_in_place()
    assert models.leftovers() == []


def test_not_enough_free_space_is_refused_before_any_download(models, tmp_path, monkeypatch):
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
        try:
            line = _one_error(models.fetch(cache=small), "not enough free space", f"--to {small}",
                              f"({sum(len(d) for d in models.data.values())} bytes) still to download")
            assert not (small / "models").exists()
        finally:
            subprocess.run(["umount", str(small)], check=True)
    else:
        # Stand-in (no tmpfs without root): the library with a patched disk_usage reporting 4 MB free.
        from kiln.models import plan
        from kiln.models.fetch import FetchRequest, fetch_models
        from kiln.project import Project
        monkeypatch.setattr(plan.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(8 << 20, 4 << 20, 4 << 20))
        spec = Project(models.root).subject("4090", "tiny").image
        with pytest.raises(KilnError) as caught:
            fetch_models(spec.models, FetchRequest(small, spec.where), endpoint_from_env())
        line = caught.value.line()
    assert "free" in line and models.server.seen == []


def test_the_token_goes_to_the_endpoint_and_never_to_another_host(models, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with ModelServer(shown_host="localhost") as cdn:
        dit, vae = models.path_of("dit.safetensors"), models.path_of("ae.safetensors")
        cdn.files["/blob/dit"] = models.data["dit.safetensors"]
        models.server.faults.redirect[dit] = f"{cdn.base}/blob/dit"          # another host: no token
        models.server.files["/blob/ae"] = models.data["ae.safetensors"]
        models.server.faults.redirect[vae] = "/blob/ae"                     # same origin: token kept
        result = models.fetch()
        out = _ok(result)
        assert [s.headers.get("authorization") for s in cdn.seen] == [None]
    assert {s.path: s.headers.get("authorization") for s in models.server.seen} == {
        dit: f"Bearer {TOKEN}", vae: f"Bearer {TOKEN}", "/blob/ae": f"Bearer {TOKEN}",
        models.path_of("encoder.safetensors"): f"Bearer {TOKEN}"}
    assert TOKEN not in out + result.stderr
    models.assert_in_place()


def test_not_found_names_the_url_without_the_token(models, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    path = models.path_of("ae.safetensors")
    del models.server.files[path]
    result = models.fetch()
    line = _one_error(result, f"HTTP 404 for {models.server.base}{path} (EntryNotFound: Entry not found)",
                      "vae/ae.safetensors", "images/tiny.yaml")
    assert TOKEN not in result.stdout + result.stderr and "Bearer" not in line
    assert len(models.server.gets(path)) == 1            # a 404 is not retried
    assert not models.final("ae.safetensors").exists() and models.leftovers() == []


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_bad_cache_path(models, tmp_path, kind):
    target = tmp_path / "not-a-cache"
    if kind == "file":
        target.write_text("x")
    _one_error(models.fetch(cache=target), f"--to: cache {'folder ' if kind == 'missing' else ''}{target}",
               "invoke provision.cache")
    assert models.server.seen == []
    assert target.is_file() if kind == "file" else not target.exists()


def test_bad_endpoint_is_one_line(models, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "ftp://mirror.example")
    _one_error(models.fetch(), "HF_ENDPOINT", "not an http(s) URL")


def test_an_image_without_models_has_nothing_to_fetch(models):
    out = _ok(invoke("models.fetch", "--gpu", "4090", "--to", str(models.cache), root=models.root))
    assert "lists no model files" in out and not (models.cache / "models").exists()


def test_the_task_is_listed_with_help(project_copy):
    line = next(line for line in invoke("--list", root=project_copy).stdout.splitlines()
                if line.strip().startswith("models.fetch "))
    assert "Fetch the image's model files" in line


def test_endpoint_urls_and_where_the_token_goes():
    endpoint = endpoint_from_env({"HF_ENDPOINT": "https://mirror.example/hf/", "HF_TOKEN": TOKEN})
    assert endpoint.base == "https://mirror.example/hf"
    assert endpoint.auth_for("https://mirror.example:443/hf/x") == {"Authorization": f"Bearer {TOKEN}"}
    for other in ("http://mirror.example/hf/x", "https://cdn.mirror.example/x", "https://mirror.example:8443/x"):
        assert endpoint.auth_for(other) == {}
    assert TOKEN not in repr(endpoint)
    assert endpoint_from_env({}).base == "https://huggingface.co"
    assert Endpoint("https://huggingface.co").auth_for("https://huggingface.co/x") == {}
    with pytest.raises(KilnError, match="credentials"):
        endpoint_from_env({"HF_ENDPOINT": "https://user:pw@mirror.example"})


def _victim(tmp_path: Path) -> Path:
    """A file outside the cache that a link planted in it points at (root's, mode 0600, when run as root)."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    victim.chmod(0o600)
    return victim


def _untouched(path: Path):
    info = os.stat(path)
    return path.read_bytes(), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


# A process in a container can write the cache (it is the image user's) and plant any of these; the fetch
# (run as root here: the suite runs as root) must neither write, truncate, chown nor chmod the file they
# lead to. Without root the same refusals hold and the victim's content shows any write.
PLANTED = {"lock link": ("ae.safetensors.lock", "symlink", "is a symbolic link"),
           "partial link": ("ae.safetensors.part", "symlink", "is a symbolic link"),
           "record link": ("ae.safetensors.verified", "symlink", "is a symbolic link"),
           "final link": ("ae.safetensors", "symlink", "is a symbolic link"),
           "lock hard link": ("ae.safetensors.lock", "hardlink", "has 1 other hard link(s)"),
           "partial hard link": ("ae.safetensors.part", "hardlink", "has 1 other hard link(s)")}


@pytest.mark.parametrize("case", PLANTED)
def test_a_link_planted_in_the_cache_is_refused_and_its_target_untouched(models, tmp_path, case):
    name, kind, what = PLANTED[case]
    victim = _victim(tmp_path)
    before = _untouched(victim)
    planted = models.final("ae.safetensors").with_name(name)
    if name.endswith(".verified"):
        _ok(models.fetch())                 # the file in place, its record replaced by a link
        planted.unlink()
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.symlink_to(victim) if kind == "symlink" else os.link(victim, planted)
    _one_error(models.fetch(), f"{planted}: {what}", "remove it")
    assert _untouched(victim) == before
    models.assert_in_place("dit.safetensors", "encoder.safetensors")


@pytest.mark.parametrize("linked", ["models", "models/vae"])
def test_a_linked_model_folder_is_refused_and_nothing_written_where_it_points(models, tmp_path, linked):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = models.cache / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere)
    _one_error(models.fetch(), f"{link}: is a symbolic link", "make it a real folder")
    assert list(elsewhere.iterdir()) == [] and models.server.seen == []
    assert sorted(p.name for p in (models.cache / "models").iterdir()) == (["vae"] if linked == "models/vae" else [])


@pytest.mark.parametrize("key, value", [("path", "../../other-owner/other-repo/resolve/main/x.safetensors"),
                                        ("path", "split_files/./vae/ae.safetensors"),
                                        ("revision", "main/../../../other-owner/other-repo"),
                                        ("file", "..")])
def test_dot_segments_in_the_manifest_are_refused(models, key, value):
    spec_file = models.root / "images" / "tiny.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    entry = spec["models"][2]
    (entry if key == "file" else entry["source"])[key] = value
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    keypath = "models[2].file" if key == "file" else f"models[2].source.{key}"
    _one_error(models.fetch(), "images/tiny.yaml:", f"key '{keypath}': {value!r}", "'.' or '..'")
    assert models.server.seen == [] and not (models.cache / "models").exists()


def test_a_token_goes_over_plain_http_only_to_a_loopback_address():
    for base in ("http://127.0.0.1:8080", "http://127.8.9.10", "http://[::1]:9000", "http://localhost:8000",
                 "https://mirror.example"):
        assert endpoint_from_env({"HF_ENDPOINT": base, "HF_TOKEN": TOKEN}).token == TOKEN, base
    for base in ("http://mirror.example", "http://10.0.0.7:8080", "http://127.0.0.1.example.com",
                 "http://[::ffff:10.0.0.7]"):
        with pytest.raises(KilnError, match="cleartext") as caught:
            endpoint_from_env({"HF_ENDPOINT": base, "HF_TOKEN": TOKEN})
        assert TOKEN not in caught.value.line()
    assert endpoint_from_env({"HF_ENDPOINT": "http://mirror.example"}).token == ""


def test_a_token_for_a_plain_http_mirror_on_the_network_is_refused(models, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:8080")     # TEST-NET-1: refused before any connection
    result = models.fetch()
    _one_error(result, "HF_TOKEN would be sent in cleartext to 192.0.2.1", "https://")
    assert TOKEN not in result.stdout + result.stderr and not (models.cache / "models").exists()


def test_another_users_lock_file_is_waited_on_not_refused(tmp_path):
    """A second user may not write the first one's lock file: it locks it read-only, waits while the first
    holds it, then takes over. The second user is uid 10001 in a forked child; the folder is reached through
    the descriptor the child inherits (the test's temporary folders are root's alone)."""
    if os.geteuid() != 0:
        pytest.skip("acting as a second user needs root")
    path = tmp_path / "vae"
    path.mkdir()
    os.chown(path, UID, UID)
    folder = Folder(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY))
    lock = path / "ae.safetensors.lock"
    first = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)       # the first user's (root's), mode 0644
    fcntl.flock(first, fcntl.LOCK_EX)
    os.write(first, f"{os.getpid()}\n".encode())
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(first)                 # the first user's lock stays the parent's alone
        _second_user(folder, lock.name, writing)
    os.close(writing)
    status = None
    try:
        assert _line(reading) == f"waiting on pid {os.getpid()}"
        lock.unlink()                   # as a holder does, before it releases the lock
        os.close(first)
        assert _line(reading) == "held"
        status = os.waitpid(child, 0)[1]
        assert status == 0 and not lock.exists()
    finally:
        if status is None:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        folder.close()


def _second_user(folder: Folder, name: str, out: int) -> None:
    code = 1
    try:
        os.setgroups([])
        os.setgid(UID)
        os.setuid(UID)
        with held(folder, name, threading.Event(), lambda holder: os.write(out, f"waiting on {holder}\n".encode())):
            os.write(out, b"held\n")
        code = 0
    except BaseException as exc:
        os.write(out, f"{exc}\n".encode())
    finally:
        os._exit(code)


def _line(fd: int) -> str:
    text = b""
    while not text.endswith(b"\n"):
        assert select.select([fd], [], [], 30)[0], f"no line from the second user; so far {text!r}"
        chunk = os.read(fd, 200)
        assert chunk, f"the second user ended early: {text!r}"
        text += chunk
    return text.decode().strip()
