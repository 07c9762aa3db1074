"""The real default stack: torch 2.3.1+cu121, xformers 0.0.27, cuDNN 8.9.2.26 and every locked package,
built through `invoke build` like a user does. ComfyUI is the stand-in (the real source needs the git
host), so the image is labelled unverified; everything else is the real thing."""

import json

from packaging.utils import canonicalize_name

from kiln.engine.client import connect
from kiln.data.lock import load_lock
from tests.conftest import ROOT
from tests.engine.conftest import run_in

from tests.slow.conftest import TAG


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


def test_image_is_non_root_lean_and_carries_no_ca(built, test_ca):
    _, marker = test_ca
    client = connect()
    out = run_in(client, TAG, "id -u; for p in gcc cc make pip pip3; do command -v $p; done; "
                 "ls /root/.cache/pip /var/lib/apt/lists/*_Packages 2>/dev/null; "
                 "find / -xdev -name '*.whl' 2>/dev/null | head -3; "
                 f"grep -rlF '{marker}' /etc /opt /usr/local /tmp /home /root 2>/dev/null | head -3; true")
    assert out.split() == ["10001"]
    history = client.api.history(TAG)
    assert not any("bundle" in (h.get("CreatedBy") or "") or "ca-cert" in (h.get("CreatedBy") or "")
                   for h in history)


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
