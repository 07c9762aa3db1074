"""The Z-Image stack built for real through `invoke build --image z-image-turbo`: the card's torch 2.3.1 /
CUDA 12.1 / xformers 0.0.27 with ComfyUI 0.3.74's requirements, exactly as the zimage stack locks them.
ComfyUI is the stand-in reporting 0.3.74 (the real source needs the git host), so the image is labelled
unverified; every wheel is the real one."""

import json

from packaging.utils import canonicalize_name

from kiln.data.lock import load_lock
from kiln.engine.client import connect
from tests.conftest import ROOT
from tests.engine.conftest import run_in
from tests.slow.conftest import ZIMAGE_TAG


def test_zimage_image_carries_exactly_the_zimage_stack(zimage_built):
    lock = load_lock(ROOT / "versions.lock", stack="zimage")
    out = run_in(connect(), ZIMAGE_TAG, "/opt/venv/bin/python -c '"
                 "import json, torch, xformers, importlib.metadata as md; "
                 "print(json.dumps({\"torch\": torch.__version__, \"xformers\": xformers.__version__, "
                 "\"dists\": {d.metadata[\"Name\"]: d.version for d in md.distributions()}}))'")
    facts = json.loads(out.strip().splitlines()[-1])
    assert (facts["torch"], facts["xformers"]) == ("2.3.1+cu121", "0.0.27")
    installed = {canonicalize_name(k): v for k, v in facts["dists"].items()}
    assert installed == {key: pkg.version for key, pkg in lock.packages.items()}
    assert installed["comfyui-frontend-package"] == "1.30.6" and "sqlalchemy" in installed


def test_zimage_image_is_labelled_with_its_stack(zimage_built):
    labels = connect().images.get(ZIMAGE_TAG).attrs["Config"]["Labels"]
    lock = load_lock(ROOT / "versions.lock", stack="zimage")
    assert labels["io.kiln.stack"] == "zimage" and labels["io.kiln.comfyui"] == "0.3.74"
    assert labels["io.kiln.lock-sha256"] == lock.digest != load_lock(ROOT / "versions.lock").digest
    assert zimage_built["tags"][0] == ZIMAGE_TAG
