"""The names the toolkit gives things, in one pure module: image tags and labels, the image's user,
base image references, paths inside the image and the cache's folders. Render, build, run, smoke and
the image facts all take them from here."""

from __future__ import annotations

from kiln import __version__
from kiln.data.lock import Lock
from kiln.data.records.folder import BAKED_SUFFIX
from kiln.data.subject import Subject

UID = 10001                          # the image's user and group; caches must be writable by it
TOOLKIT_LABEL = "io.kiln.toolkit"    # every Docker object the toolkit creates carries it
ROLE_LABEL = "io.kiln.role"          # what a container is for (run, smoke, test)
RECIPE_LABEL = "io.kiln.base-recipe"
IMAGE_LABEL = "io.kiln.image"
LOCK_LABEL = "io.kiln.lock-sha256"    # of the image's stack and the bases (kiln.data.lock.stack_digest)
STACK_LABEL = "io.kiln.stack"
GPU_LABEL = "io.kiln.gpu"
SOURCE_LABEL = "io.kiln.comfyui-source"    # verified / unverified
ORIGIN_LABEL = "io.kiln.comfyui-origin"
MODELS_LABEL = "io.kiln.models"             # "baked" when the manifest's files are in the image
MODELS_SHA_LABEL = "io.kiln.models.sha256"  # folder/file=sha256,... of the baked files
BASE_REPOSITORY = "kiln-base"

COMFYUI_DIR = "/opt/comfyui"
FACTS_PATH = "/opt/kiln/kiln.json"
SMOKE_RUNNER = "/opt/kiln/payload/run-smoke.sh"
EXTRA_MODEL_PATHS = "/opt/kiln/extra_model_paths.yaml"
BAKED_MODELS_DIR = f"{COMFYUI_DIR}/models"   # ComfyUI's own models folder: where baked files go
READY_MARKER = "/tmp/kiln/ready"     # written by the warm-up; the healthcheck reads it
FAILED_MARKER = "/tmp/kiln/failed"   # the warm-up's failure reason, shown by the healthcheck
DRAIN_MARKER = "/tmp/kiln/draining"  # written by a drain (preStop): no new prompts, the queue runs out
# In the cache's models/ folder while a deployment's fetch runs beside the server (it holds the host's boot id):
# the warm-up waits for the model files instead of failing on them
ARRIVING_MARKER = ".kiln-arriving"
# Beside ComfyUI on its port P, the exporter (provision/container/fleet) serves /metrics and /ready on P + 1000
# and HAProxy's agent check on P + 1100: one rule in containers and for servers sharing one host.
METRICS_PORT_OFFSET = 1000
AGENT_PORT_OFFSET = 1100
WRITABLE = (f"{COMFYUI_DIR}/output", f"{COMFYUI_DIR}/temp", f"{COMFYUI_DIR}/user", "/home/comfy")

MODELS_DIR = "models"
CACHE_DIRS = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton", "CUDA_CACHE_PATH": "cuda",
              "HF_HOME": "hf"}


def cache_folders() -> list[str]:
    return [MODELS_DIR, *CACHE_DIRS.values()]


def cache_env(mount: str) -> dict[str, str]:
    return {name: f"{mount}/{folder}" for name, folder in CACHE_DIRS.items()}


def image_tags(s: Subject, baked: bool = False) -> list[str]:
    st, repo = s.lock.stack, f"kiln/{s.image.name}"
    cuda = "cu" + st.cuda.replace(".", "")
    suffix = BAKED_SUFFIX if baked else ""
    return [f"{repo}:{s.lock.comfyui.version}-torch{st.torch}-{cuda}-{s.gpu.name}{suffix}",
            f"{repo}:lock-{s.lock.digest[:12]}-{s.gpu.name}{suffix}"]


def labels(s: Subject) -> dict[str, str]:
    st = s.lock.stack
    return {TOOLKIT_LABEL: __version__, IMAGE_LABEL: s.image.name, GPU_LABEL: s.gpu.name,
            LOCK_LABEL: s.lock.digest, "io.kiln.torch": st.torch, "io.kiln.cuda": st.cuda,
            "io.kiln.cudnn": st.cudnn, "io.kiln.xformers": st.xformers, "io.kiln.python": st.python,
            "io.kiln.comfyui": s.lock.comfyui.version, STACK_LABEL: s.lock.name}


def base_ref(lock: Lock, name: str, stage: str = "runtime") -> str:
    """The runtime base, or (stage="build") the builder's: the runtime one plus what making a venv needs."""
    base = lock.bases[name]
    if base.kind == "registry":
        return f"{base.image}@{base.digest}"
    return f"{BASE_REPOSITORY}:{name}-py{base.python}" + ("-build" if stage == "build" else "")


def run_name(s: Subject, port: int) -> str:
    return f"kiln-{s.image.name}-{s.gpu.name}-{port}"


def metrics_port(port: int) -> int:
    return port + METRICS_PORT_OFFSET


def agent_port(port: int) -> int:
    return port + AGENT_PORT_OFFSET
