"""The real default stack: torch 2.3.1+cu121, xformers 0.0.27, cuDNN 8.9.2.26 and every locked package,
built through `invoke build` like a user does. ComfyUI is the stand-in (the real source needs the git
host), so the image is labelled unverified; everything else is the real thing."""

import io
import json
import tarfile

import pytest
from packaging.utils import canonicalize_name

from kiln.engine.client import connect
from kiln.data.lock import load_lock
from tests.conftest import ROOT
from tests.engine.conftest import run_in

from tests.slow.conftest import TAG

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them


def test_stack_versions_are_exactly_the_lock(built):
    client, lock = connect(), load_lock(ROOT / "versions.lock")
    out = run_in(client, TAG, "/opt/venv/bin/python -c '"
                 "import json, sys, torch, xformers, importlib.metadata as md; "
                 "print(json.dumps({\"python\": sys.version.split()[0], \"torch\": torch.__version__, "
                 "\"cuda\": torch.version.cuda, \"cudnn\": torch.backends.cudnn.version(), "
                 "\"xformers\": xformers.__version__, "
                 "\"dists\": {d.metadata[\"Name\"]: d.version for d in md.distributions()}}))'")
    facts = json.loads(out.strip().splitlines()[-1])
    assert (facts["torch"], facts["cuda"], facts["cudnn"], facts["xformers"]) == ("2.3.1+cu121", "12.1", 8902, "0.0.27")
    assert facts["python"].startswith("3.11.")
    installed = {canonicalize_name(k): v for k, v in facts["dists"].items()}
    locked = {key: pkg.version for key, pkg in lock.packages.items()}
    assert installed == locked


def test_image_runs_as_the_unprivileged_user(built):
    config = connect().images.get(TAG).attrs["Config"]
    assert config["User"] == "10001:10001"


LEAN = ("id -u; "
        "find / -xdev \\( -name gcc -o -name 'gcc-[0-9]*' -o -name cc -o -name make -o -name pip -o -name pip3 "
        "-o -name 'pip3.*' \\) \\( -type f -o -type l \\) -perm /111 -print 2>/dev/null; "
        "find / -xdev -name '*.whl' -print 2>/dev/null; "
        "find /root/.cache /home/comfy/.cache /var/lib/apt/lists -mindepth 1 -print 2>/dev/null | head -5; true")


def test_image_is_lean_looked_at_as_root(built):
    """As root over the whole filesystem: no compiler, no pip, no wheel, no pip cache, no apt lists."""
    out = run_in(connect(), TAG, LEAN, user="0").split()
    assert out[0] == "0" and out[1:] == []


def test_the_leanness_probe_can_fail(built, tmp_path):
    """The same probe on the builder base, which carries pip's wheel for venvs, does find something."""
    out = run_in(connect(), "kiln-base:debian-bookworm-py3.11-build", LEAN, user="0").split()
    assert out[0] == "0" and any(path.endswith(".whl") for path in out[1:])


def _scan(stream, patterns: list[bytes]) -> dict[bytes, list[str]]:
    """Every layer (and the image config, which holds the history) of a `docker save` stream, searched for
    each pattern; chunks overlap so a pattern across a chunk boundary is still found."""
    found: dict[bytes, list[str]] = {p: [] for p in patterns}
    keep = max(len(p) for p in patterns)
    with tarfile.open(fileobj=_Reader(stream), mode="r|") as outer:
        for member in outer:
            if not member.isfile():
                continue
            handle, tail = outer.extractfile(member), b""
            while chunk := handle.read(1 << 22):
                window = tail + chunk
                for pattern in patterns:
                    if pattern in window and member.name not in found[pattern]:
                        found[pattern].append(member.name)
                tail = window[-keep:]
    return found


class _Reader(io.RawIOBase):
    """A file over the generator docker's image.save() returns."""

    def __init__(self, chunks):
        self.chunks, self.rest = iter(chunks), b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self.rest:
            self.rest = next(self.chunks, b"")
            if not self.rest:
                return 0
        size = min(len(buffer), len(self.rest))
        buffer[:size], self.rest = self.rest[:size], self.rest[size:]
        return size


def test_ca_is_in_no_layer_and_no_history(built, test_ca):
    """The CA given with --ca-bundle: its PEM lines, DER bytes and fingerprint in no layer, config or history.
    A string the image must carry (the warm-up node's name) is searched too, so the scan can fail."""
    _, needles = test_ca
    carried = b"KilnDeviceWarmup"
    found = _scan(connect().images.get(TAG).save(chunk_size=1 << 22), needles.patterns() + [carried])
    assert found.pop(carried), "the scan did not see a string the image carries"
    assert {p: where for p, where in found.items() if where} == {}
    history = " ".join(h.get("CreatedBy") or "" for h in connect().api.history(TAG))
    assert not any(p.decode(errors="ignore") in history for p in needles.patterns()[:3])


def test_smoke_payload_in_the_image_without_a_gpu(built):
    client = connect()
    out = run_in(client, TAG, "cd /opt/kiln/payload && /opt/venv/bin/python -m smoke --expect /opt/kiln/kiln.json "
                 "--json /tmp/smoke.json >/dev/null; echo rc=$?; cat /tmp/smoke.json")
    rc_line, report = out.split("\n", 1)
    data = json.loads(report)
    verdicts = {c["group"] + "." + c["name"]: c for c in data["checks"]}
    assert rc_line == "rc=0"
    for name in ("python", "torch", "cuda", "cudnn", "xformers"):
        assert verdicts[f"versions.{name}"]["verdict"] == "pass"
    assert verdicts["gpu.visible"]["verdict"] == "skip" and "no GPU" in verdicts["gpu.visible"]["note"]
    assert verdicts["numerics.matmul_bf16"]["verdict"] == "pass"


def test_build_record_describes_the_image(built):
    assert built["size"] > 4e9 and built["tags"][0] == TAG
    assert built["verified_source"] is False and built["source"].startswith("unverified")
    biggest = max(built["layers"], key=lambda layer: layer["size"])
    assert "COPY" in biggest["created_by"] and biggest["size"] > 4e9
