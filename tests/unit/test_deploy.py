"""invoke deploy: the manifest and every target rendered for 4090 and h200, pinned by golden files
and checked by each target's own tool (kubernetes-validate strict on two Kubernetes versions,
cloud-init schema, shellcheck, docker-compose config, JSON Schemas of the marketplaces); bad input
is one line, exit 2, nothing written."""

import base64
import gzip
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kiln.identity import image_tags
from kiln.project import Project
from tests.conftest import ROOT, invoke
from tests.jsonschema_tool import check_jsonschema
from tests.standin.records import DIGEST, IMAGE_ID, REGISTRY, write_build_record, write_run_record
from tests.unit.deploy_steps import fake_docker, function, order, run_steps
from tests.unit.model_server import ModelServer
from tests.waiting import until

GOLDEN = ROOT / "tests" / "golden" / "deploy"
SCHEMAS = ROOT / "docs" / "schemas" / "marketplaces"
BIN = Path(sys.executable).parent
K8S_VERSIONS = ("1.25.0", "1.37.0")
@pytest.fixture
def published(project_copy):
    for gpu in ("4090", "h200", "h800"):
        write_build_record(project_copy, gpu)
    return project_copy


def _deploy(root, gpu, out, target="all", *extra):
    return invoke("deploy", "--gpu", gpu, "--target", target, "--out", str(out), *extra, root=root)


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("image", ["comfyui", "z-image-turbo"])
@pytest.mark.parametrize("gpu", ["4090", "h200"])
def test_golden_and_deterministic(published, tmp_path, gpu, image):
    """comfyui (no models) under golden/deploy/<gpu>, z-image-turbo (a model manifest) under
    golden/deploy/z-image-turbo/<gpu>."""
    write_build_record(published, gpu, image=image)
    out = tmp_path / gpu
    result = _deploy(published, gpu, out, "all", "--image", image)
    assert result.returncode == 0, result.stderr
    got = _tree(out)
    fetch = {"cloud-init/fetch_models.py"} if image == "z-image-turbo" else set()
    assert set(got) == {"deploy.json", "compose.yaml", "k8s/deployment.yaml", "k8s/pvc.yaml", "k8s/service.yaml",
                        "k8s/pdb.yaml", "k8s/scaledobject.yaml",
                        "cloud-init/user-data.yaml", "cloud-init/kiln-deploy.sh", "runpod/template.json",
                        "runpod/.runpod/hub.json", "runpod/.runpod/tests.json", "vast/template.json"} | fetch
    for name, text in got.items():
        golden = (GOLDEN if image == "comfyui" else GOLDEN / image) / gpu / name
        if os.environ.get("KILN_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert text == golden.read_text(), f"{gpu}/{name} differs; KILN_UPDATE_GOLDEN=1 rewrites goldens"
    assert _deploy(published, gpu, out, "all", "--image", image).returncode == 0
    assert _tree(out) == got
    assert os.access(out / "cloud-init" / "kiln-deploy.sh", os.X_OK)


def test_manifest_takes_the_digest_the_profile_and_the_defaults(published, tmp_path):
    _deploy(published, "h200", tmp_path / "out")
    d = json.loads((tmp_path / "out" / "deploy.json").read_text())
    assert d["image"] == {"reference": f"{REGISTRY}/kiln/comfyui@{DIGEST}", "published": True,
                          "tag": image_tags(Project(published).subject("h200"))[0], "container_disk_gb": 16}
    assert d["gpu"]["product_label"] == "NVIDIA-H200" and d["gpu"]["runpod_pool"] == "HOPPER_141"
    assert d["gpu"]["driver_floor"] == Project(published).lock.stack.driver_floor
    assert d["startup"] == {"budget_s": 900, "period_s": 2, "weights_load_s": 0,
                            "source": "default: no warm-up measured by invoke run"}
    assert d["uid"] == 10001 and d["port"] == 8188 and d["cache"]["expected_bytes"] == 0
    deployment = yaml.safe_load((tmp_path / "out" / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H200"]}]
    [container] = pod["containers"]
    assert container["image"] == f"{REGISTRY}/kiln/comfyui@{DIGEST}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] == 900
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/system_stats"
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] and not sec["allowPrivilegeEscalation"] and sec["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/cache", "/tmp", "/opt/comfyui/output", "/opt/comfyui/temp", "/opt/comfyui/user", "/home/comfy"} <= mounts


def test_cache_size_comes_from_the_model_manifest(published, tmp_path):
    write_build_record(published, "h200", image="z-image-turbo")
    assert invoke("deploy", "--gpu", "h200", "--image", "z-image-turbo", "--target", "k8s", "--out", str(tmp_path / "z"),
                  root=published).returncode == 0
    d = json.loads((tmp_path / "z" / "deploy.json").read_text())
    spec = yaml.safe_load((published / "images" / "z-image-turbo.yaml").read_text())
    assert d["cache"]["expected_bytes"] == sum(m["size"] for m in spec["models"])
    assert d["cache"]["volume_gb"] == -(-d["cache"]["expected_bytes"] // 10**9) + 20
    assert d["resources"]["memory_gib"] == 16 + -(-d["cache"]["expected_bytes"] // 10**9)
    pvc = yaml.safe_load((tmp_path / "z" / "k8s" / "pvc.yaml").read_text())
    assert pvc["spec"]["resources"]["requests"]["storage"] == f"{d['cache']['volume_gb']}Gi"


@pytest.mark.parametrize("seconds, cpu_mode, budget", [(38.5, False, 120), (100.0, False, 300), (100.0, True, 900)])
def test_startup_budget_from_the_recorded_warmup(published, tmp_path, seconds, cpu_mode, budget):
    write_run_record(published, "kiln/comfyui:x", seconds, {"first_s": 1.0}, cpu_mode)
    _deploy(published, "4090", tmp_path / "out", "k8s")
    d = json.loads((tmp_path / "out" / "deploy.json").read_text())
    assert d["startup"]["budget_s"] == budget
    assert d["startup"]["source"].startswith("default" if cpu_mode else "measured")
    deployment = yaml.safe_load((tmp_path / "out" / "k8s" / "deployment.yaml").read_text())
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] == budget


def _zimage_weights_and_rate(root: Path) -> tuple[int, float]:
    spec = yaml.safe_load((root / "images" / "z-image-turbo.yaml").read_text())
    rate = yaml.safe_load((ROOT / "kiln" / "data" / "tables" / "deploy.yaml").read_text())["startup"]["cache_read_mib_s"]
    return sum(m["size"] for m in spec["models"]), rate


def _zimage_startup(root: Path, out: Path) -> dict:
    result = invoke("deploy", "--gpu", "4090", "--image", "z-image-turbo", "--target", "k8s", "--out", str(out), root=root)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "deploy.json").read_text())["startup"]


# Warm-up results as the in-image warm-up reports them (provision/container/serve/warmup.py).
RAN = {"device_s": 2.0, "workflow": "warmup.json", "first_s": 9.5, "second_s": 0.9}
SKIPPED = {"device_s": 2.0, "workflow": "skipped: models not in the cache: diffusion_models/z_image_turbo_bf16.safetensors"}


@pytest.mark.parametrize("warmup, cpu_mode, measured", [(RAN, False, True), (SKIPPED, False, False),
                                                       (RAN, True, False)])
def test_only_a_gpu_run_of_the_warmup_workflow_sizes_the_budget_and_weight_reading_is_added(
        published, tmp_path, warmup, cpu_mode, measured):
    write_build_record(published, "4090", image="z-image-turbo")
    write_run_record(published, "kiln/z-image-turbo:x", 30.0, warmup, cpu_mode)
    startup = _zimage_startup(published, tmp_path / "out")
    weights, rate = _zimage_weights_and_rate(published)
    load = -(-weights // int(rate * 2**20))
    base = max(120, 30.0 * 3) if measured else 900
    assert startup["weights_load_s"] == load and load > 100  # 20.7 GB at a network volume's baseline
    period = startup["period_s"]
    assert period == 2 and startup["budget_s"] == -(-(base + load) // period) * period
    assert startup["source"].startswith("measured" if measured else "default")
    assert f"+ {load} s to read 20.7 GB of model files" in startup["source"]
    if warmup is SKIPPED:
        assert "did not run the warm-up workflow" in startup["source"]
    k8s = yaml.safe_load((tmp_path / "out" / "k8s" / "deployment.yaml").read_text())
    probe = k8s["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] == startup["budget_s"]


@pytest.mark.parametrize("later, cpu_mode", [(SKIPPED, False), (RAN, True), (SKIPPED, True)])
def test_a_lesser_run_never_replaces_a_complete_gpu_record(published, tmp_path, later, cpu_mode):
    first = write_run_record(published, "kiln/z-image-turbo:x", 30.0, RAN, False)
    kept = first.path.read_text()
    second = write_run_record(published, "kiln/z-image-turbo:x", 5.0, later, cpu_mode)
    assert second.kept and second.path == first.path and first.path.read_text() == kept
    assert "the earlier record is a GPU run that ran the warm-up workflow" in second.kept_because
    write_build_record(published, "4090", image="z-image-turbo")
    assert _zimage_startup(published, tmp_path / "out")["source"].startswith("measured: 30 s")
    better = write_run_record(published, "kiln/z-image-turbo:x", 20.0, RAN, False)
    assert not better.kept and json.loads(better.path.read_text())["seconds_to_healthy"] == 20.0


def test_a_complete_run_replaces_a_lesser_record(published):
    write_run_record(published, "kiln/z-image-turbo:x", 5.0, SKIPPED, True)
    written = write_run_record(published, "kiln/z-image-turbo:x", 30.0, SKIPPED, False)
    assert not written.kept and json.loads(written.path.read_text())["cpu_mode"] is False
    assert not list(written.path.parent.glob(".*"))  # no temporary file left beside the record


def test_memory_request_reasoning_and_read_rate_assumption_are_written_down():
    text = (ROOT / "kiln" / "data" / "tables" / "deploy.yaml").read_text()
    rate = text.split("cache_read_mib_s:")[0].rsplit("period_s:", 1)[1]
    assert "ASSUMPTION" in rate and "docs.aws.amazon.com" in rate
    memory = text.split("memory_per_weight:")[0].rsplit("memory_base_gib:", 1)[1]
    assert "load_torch_file" in memory and "Reasoning" in memory


CORE = ("deployment.yaml", "pdb.yaml", "pvc.yaml", "service.yaml")   # kinds kubernetes-validate knows
KEDA = ROOT / "docs" / "schemas" / "keda" / "scaledobject.schema.json"


@pytest.mark.parametrize("gpu", ["4090", "h200"])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_pass_strict_validation(published, tmp_path, gpu, version):
    _deploy(published, gpu, tmp_path / "out", "k8s")
    folder = tmp_path / "out" / "k8s"
    assert sorted(p.name for p in folder.glob("*.yaml")) == sorted((*CORE, "scaledobject.yaml"))
    files = [str(folder / name) for name in CORE]
    result = subprocess.run([BIN / "kubernetes-validate", "--strict", "-k", version, *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(CORE)


def test_the_service_keeps_a_client_on_the_pod_that_ran_its_prompts(published, tmp_path):
    """Prompt ids and output files are per pod: once KEDA runs several, a client's follow-ups must not spread."""
    _deploy(published, "h200", tmp_path / "out", "k8s")
    service = yaml.safe_load((tmp_path / "out" / "k8s" / "service.yaml").read_text())
    assert service["kind"] == "Service" and service["spec"]["sessionAffinity"] == "ClientIP"


def test_kubernetes_validation_catches_a_wrong_field(published, tmp_path):
    _deploy(published, "4090", tmp_path / "out", "k8s")
    path = tmp_path / "out" / "k8s" / "deployment.yaml"
    path.write_text(path.read_text().replace("readOnlyRootFilesystem:", "readOnlyRootFilesytem:"))
    result = subprocess.run([BIN / "kubernetes-validate", "--strict", "-k", K8S_VERSIONS[0], str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0


@pytest.mark.parametrize("image", ["comfyui", "z-image-turbo"])
@pytest.mark.parametrize("gpu", ["4090", "h200"])
def test_cloud_init_passes_schema_and_its_shell_passes_shellcheck(published, tmp_path, gpu, image):
    write_build_record(published, gpu, image=image)
    assert _deploy(published, gpu, tmp_path / "out", "cloud-init", "--image", image).returncode == 0
    folder = tmp_path / "out" / "cloud-init"
    schema = subprocess.run(["cloud-init", "schema", "--config-file", str(folder / "user-data.yaml")],
                            capture_output=True, text=True)
    assert schema.returncode == 0 and "Valid cloud-config" in schema.stdout, schema.stdout + schema.stderr
    data = yaml.safe_load((folder / "user-data.yaml").read_text())
    [script] = [_carried(f) for f in data["write_files"] if f["path"] == "/usr/local/sbin/kiln-deploy"]
    assert script == (folder / "kiln-deploy.sh").read_text()
    assert data["runcmd"] == [["/usr/local/sbin/kiln-deploy"]]
    sc = subprocess.run([BIN / "shellcheck", str(folder / "kiln-deploy.sh")], capture_output=True, text=True)
    assert sc.returncode == 0, sc.stdout
    text = script
    assert f"IMAGE={REGISTRY}/kiln/{image}@{DIGEST}" in text and "docker pull \"$IMAGE\"" in text
    assert "DRIVER_FLOOR=525.60.13" in text and "/dev/nvme" in text and "--password-stdin" in text


def _carried(entry: dict) -> str:
    """A write_files entry's content as the VM gets it."""
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(entry["content"])).decode()
    return entry["content"]


def test_cloud_init_schema_catches_a_wrong_value(published, tmp_path):
    _deploy(published, "4090", tmp_path / "out", "cloud-init")
    path = tmp_path / "out" / "cloud-init" / "user-data.yaml"
    path.write_text(path.read_text().replace('permissions: "0755"', "permissions: 755"))
    assert subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True).returncode != 0


@pytest.mark.parametrize("gpu", ["4090", "h200"])
def test_compose_file_is_valid_and_asks_for_the_gpu(published, tmp_path, gpu):
    _deploy(published, gpu, tmp_path / "out", "compose")
    path = tmp_path / "out" / "compose.yaml"
    config = subprocess.run(["docker-compose", "-f", str(path), "config"], capture_output=True, text=True)
    assert config.returncode == 0, config.stderr
    service = yaml.safe_load(config.stdout)["services"]["comfyui"]
    assert service["deploy"]["resources"]["reservations"]["devices"] == [{"driver": "nvidia", "count": 1,
                                                                         "capabilities": ["gpu"]}]
    assert service["image"] == f"{REGISTRY}/kiln/comfyui@{DIGEST}"
    assert service["read_only"] and service["restart"] == "unless-stopped"
    assert service["ports"] == ["127.0.0.1:8188:8188/tcp"] and service["volumes"] == ["/var/lib/kiln/cache:/cache:rw"]
    assert service["healthcheck"]["start_period"] == "15m"
    broken = path.read_text().replace("read_only: true", "read_onyl: true")
    path.write_text(broken)
    assert subprocess.run(["docker-compose", "-f", str(path), "config", "-q"], capture_output=True).returncode != 0


MARKETPLACE = {"runpod/template.json": "runpod-template", "runpod/.runpod/hub.json": "runpod-hub",
               "runpod/.runpod/tests.json": "runpod-tests", "vast/template.json": "vast-template"}


@pytest.mark.parametrize("gpu", ["4090", "h200"])
def test_marketplace_files_pass_their_schemas(published, tmp_path, gpu):
    _deploy(published, gpu, tmp_path / "out")
    for name, schema in MARKETPLACE.items():
        result = check_jsonschema("--schemafile", SCHEMAS / f"{schema}.schema.json", tmp_path / "out" / name)
        assert result.returncode == 0, name + result.stdout
    vast = json.loads((tmp_path / "out" / "vast" / "template.json").read_text())
    assert vast["extra_filters"]["gpu_name"] == {"eq": {"4090": "RTX 4090", "h200": "H200"}[gpu]}


def test_every_marketplace_schema_cites_its_documentation_and_has_teeth(published, tmp_path):
    _deploy(published, "4090", tmp_path / "out")
    for name, schema in MARKETPLACE.items():
        doc = json.loads((SCHEMAS / f"{schema}.schema.json").read_text())
        assert "https://docs." in doc["$comment"]
        path = tmp_path / "out" / name
        data = json.loads(path.read_text())
        data.pop(doc["required"][0])
        path.write_text(json.dumps(data))
        result = check_jsonschema("--schemafile", SCHEMAS / f"{schema}.schema.json", path)
        assert result.returncode == 1 and "validation errors" in result.stdout, name + result.stdout


# --- confinement: every rendered workload runs unprivileged under the runtime's default seccomp profile ---

def _docker_run(script: str) -> list[str]:
    """The arguments of the script's `docker run` (continuation lines joined, up to its `||`)."""
    line = next(line for line in script.replace("\\\n", " ").splitlines() if line.strip().startswith("docker run "))
    return shlex.split(line.split("||")[0])


def _option_values(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == option] + \
        [arg.split("=", 1)[1] for arg in args if arg.startswith(option + "=")]


def _no_escalation(args: list[str], where: str) -> None:
    """Docker options that ask for nothing beyond the default: not privileged, seccomp and AppArmor left on, no
    capability, device, host PID or user namespace added."""
    assert not [a for a in args if a.split("=")[0] == "--privileged" and a != "--privileged=false"], where
    assert not [o for o in _option_values(args, "--security-opt") if "unconfined" in o or o.startswith("seccomp")], where
    assert not _option_values(args, "--cap-add"), where
    assert not {"--pid", "--userns", "--device"} & {a.split("=")[0] for a in args}, where


def test_every_rendered_workload_is_unprivileged_under_the_default_seccomp_profile(published, tmp_path):
    """Pinned by meaning, not only by the golden files: Kubernetes asks for the RuntimeDefault seccomp profile
    and privileged: false outright; compose and the VM's docker run keep Docker's default profile (nothing turns
    it off), privileged stays off, no new privileges, every capability dropped; the marketplace templates, whose
    hosts choose the runtime, ask for nothing more."""
    out = tmp_path / "out"
    assert _deploy(published, "h200", out).returncode == 0
    assert _deploy(published, "h200", tmp_path / "cpu", "compose", "--cpu-mode").returncode == 0

    deployment = yaml.safe_load((out / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"].get("seccompProfile") == {"type": "RuntimeDefault"}, pod["securityContext"]
    assert not any(pod.get(key) for key in ("hostPID", "hostIPC", "hostNetwork"))
    for container in pod["containers"] + pod.get("initContainers", []):
        sec = container["securityContext"]
        assert sec.get("privileged") is False and sec.get("allowPrivilegeEscalation") is False, (container["name"], sec)
        assert sec["capabilities"] == {"drop": ["ALL"]} and sec.get("seccompProfile") in (None, {"type": "RuntimeDefault"})

    for compose in (out / "compose.yaml", tmp_path / "cpu" / "compose.yaml"):
        for name, service in yaml.safe_load(compose.read_text())["services"].items():
            assert service.get("privileged", False) is False, name
            options = service.get("security_opt", [])
            assert "no-new-privileges:true" in options, name
            assert not [o for o in options if "unconfined" in o or o.startswith("seccomp")], name
            assert service["cap_drop"] == ["ALL"] and "cap_add" not in service and "devices" not in service, name
            assert service.get("ipc") == "private" and "pid" not in service and "network_mode" not in service, name

    data = yaml.safe_load((out / "cloud-init" / "user-data.yaml").read_text())
    [script] = [_carried(f) for f in data["write_files"] if f["path"] == "/usr/local/sbin/kiln-deploy"]
    run = _docker_run(script)
    _no_escalation(run, "cloud-init docker run")
    assert "no-new-privileges" in _option_values(run, "--security-opt") and _option_values(run, "--cap-drop") == ["ALL"]

    _no_escalation(shlex.split(json.loads((out / "vast" / "template.json").read_text())["env"]), "vast docker options")
    for name in MARKETPLACE:
        text = (out / name).read_text()
        assert not [word for word in ("privileged", "unconfined", "cap-add", "CAP_SYS") if word in text], name


def test_compose_runs_the_local_image_id_without_a_publish_record(project_copy, tmp_path):
    write_build_record(project_copy, "4090", published=False)
    result = _deploy(project_copy, "4090", tmp_path / "out", "compose")
    assert result.returncode == 0, result.stderr
    assert f"image: \"{IMAGE_ID}\"" in (tmp_path / "out" / "compose.yaml").read_text()
    assert "local image id" in result.stdout


def _refused(result, fragment, out: Path):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and fragment in line, line
    assert not out.exists()


def test_unknown_target_is_refused(published, tmp_path):
    _refused(_deploy(published, "4090", tmp_path / "out", "helm"), "unknown target 'helm'", tmp_path / "out")


@pytest.mark.parametrize("target", ["k8s", "cloud-init", "runpod", "vast", "all"])
def test_a_digest_target_without_a_publish_record_is_refused(project_copy, tmp_path, target):
    write_build_record(project_copy, "4090", published=False)
    _refused(_deploy(project_copy, "4090", tmp_path / "out", target), "no publish record", tmp_path / "out")


def test_no_build_record_is_refused(project_copy, tmp_path):
    _refused(_deploy(project_copy, "4090", tmp_path / "out", "compose"), "no build record", tmp_path / "out")


def test_a_build_record_from_another_lock_is_refused(published, tmp_path):
    path = published / "build" / "comfyui-4090.build.json"
    record = json.loads(path.read_text())
    record["tags"] = ["kiln/comfyui:lock-000000000000-4090"]
    path.write_text(json.dumps(record))
    _refused(_deploy(published, "4090", tmp_path / "out", "compose"), "another versions.lock", tmp_path / "out")


def test_a_profile_without_a_product_label_is_refused_for_kubernetes(published, tmp_path):
    _refused(_deploy(published, "h800", tmp_path / "out", "k8s"), "profile h800 has no product_label",
             tmp_path / "out")
    assert _deploy(published, "h800", tmp_path / "ok", "compose").returncode == 0


def test_cpu_mode_is_for_compose_only(published, tmp_path):
    _refused(_deploy(published, "4090", tmp_path / "out", "k8s", "--cpu-mode"), "--cpu-mode", tmp_path / "out")


def test_a_foreign_output_folder_is_left_alone(published, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = _deploy(published, "4090", out, "compose")
    assert result.returncode == 2 and "not an earlier kiln deployment" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# --- the model files on a cloud-init VM: the rendered fetch script against a real HTTP server ---

def _tiny_image(root: Path) -> dict[str, bytes]:
    """An image spec listing two small generated model files (their real sizes and sha256)."""
    files = {"diffusion_models/tiny-dit.safetensors": os.urandom(300_000), "vae/tiny-ae.safetensors": os.urandom(70_000)}
    spec = yaml.safe_load((root / "images" / "comfyui.yaml").read_text())
    spec.update(name="tiny", models=[
        {"role": "diffusion_model" if name.startswith("diff") else "vae", "folder": name.split("/")[0],
         "file": name.split("/")[1], "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
         "source": {"repo": "kiln-test/tiny", "revision": "a" * 40, "path": f"split_files/{name}"}}
        for name, data in files.items()])
    (root / "images" / "tiny.yaml").write_text(yaml.safe_dump(spec))
    return files


@pytest.fixture
def tiny_deploy(published, tmp_path):
    files = _tiny_image(published)
    write_build_record(published, "4090", image="tiny")
    out = tmp_path / "out"
    result = invoke("deploy", "--gpu", "4090", "--image", "tiny", "--target", "cloud-init", "--out", str(out),
                    root=published)
    assert result.returncode == 0, result.stderr
    return out, files


def _fetch_command(out: Path, cache: Path, endpoint: str, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = {"PATH": os.environ["PATH"], "HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_secret"}
    # the VM's own python3, not the toolkit's venv: the script must need nothing but the standard library
    return ["/usr/bin/python3", str(out / "cloud-init" / "fetch_models.py"), str(out / "deploy.json"), str(cache),
            *extra], env


def _fetch(out: Path, cache: Path, endpoint: str, *extra: str) -> subprocess.CompletedProcess:
    argv, env = _fetch_command(out, cache, endpoint, *extra)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def _fetching(out: Path, cache: Path, endpoint: str, *extra: str, **popen) -> subprocess.Popen:
    """The fetch script started in the background."""
    argv, env = _fetch_command(out, cache, endpoint, *extra)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def _serve(server: ModelServer, files: dict[str, bytes]) -> dict[str, str]:
    paths = {name: f"/kiln-test/tiny/resolve/{'a' * 40}/split_files/{name}" for name in files}
    server.files.update({paths[name]: data for name, data in files.items()})
    return paths


def test_cloud_init_carries_the_manifest_and_the_fetch_script(tiny_deploy):
    out, _ = tiny_deploy
    data = yaml.safe_load((out / "cloud-init" / "user-data.yaml").read_text())
    carried = {f["path"]: _carried(f) for f in data["write_files"]}
    assert carried == {"/etc/kiln/deploy.json": (out / "deploy.json").read_text(),
                       "/usr/local/lib/kiln/fetch_models.py": (ROOT / "provision" / "host" / "fetch_models.py").read_text(),
                       "/usr/local/sbin/kiln-deploy": (out / "cloud-init" / "kiln-deploy.sh").read_text()}
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    assert 'report "models missing"' in script and "MODELS=2" in script


def test_cloud_init_pulls_the_image_while_it_fetches_the_models(tiny_deploy, tmp_path):
    """The main sequence run by /bin/sh with stubbed steps: after the engine and the toolkit were checked and
    the cache prepared, the fetch runs beside the pull and beside the server's start; the wait for healthy
    comes only after both."""
    out, _ = tiny_deploy
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    code, events = run_steps(script, tmp_path, sleep={"pull": 1, "fetch_models": 2})
    seen = order(events)
    starts = [e.split()[1] for e in seen if e.startswith("start ")]
    assert code == 0 and [name for name in starts if name != "fetch_models"] == [
        "check_driver", "wait_docker", "check_toolkit", "mount_nvme", "prepare_cache", "pull", "start",
        "wait_healthy"], seen
    at = {event: t for t, what, name in events for event in [f"{what} {name}"]}
    assert at["start fetch_models"] > at["end prepare_cache"], seen
    assert at["start fetch_models"] < at["end pull"] and at["start pull"] < at["end fetch_models"], seen
    assert at["end pull"] < at["start start"] < at["end fetch_models"], seen   # the server starts as the models arrive
    assert at["start wait_healthy"] > max(at["end start"], at["end fetch_models"]), seen
    assert not (tmp_path / "cache" / "models" / ".kiln-arriving").exists()   # the fetch's end took the marker away


def test_cloud_init_stops_on_a_failed_pull_or_fetch_and_leaves_no_pull_running(tiny_deploy, tmp_path):
    """The script's own pull() against a fake docker client: a failed pull stops the script before any start,
    once the fetch it overlapped is done; a failed fetch stops the docker client's pull it overlapped (it
    never finishes, even after the script), or removes the server already started."""
    out, _ = tiny_deploy
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    code, events = run_steps(script, tmp_path / "ok", real=("pull",), sleep={"fetch_models": 0.5},
                             env={"PULL_S": "0.2"})
    assert code == 0 and ["start docker-pull", "end docker-pull"] == [e for e in order(events) if "docker-pull" in e]
    code, events = run_steps(script, tmp_path / "pull", real=("pull",), sleep={"fetch_models": 0.5},
                             env={"PULL_FAILS": "1"})
    status = json.loads((tmp_path / "pull" / "status.json").read_text())
    seen = order(events)
    assert code == 1 and "start start" not in seen and "cannot pull" in status["detail"], seen
    assert seen.index("end fetch_models") > seen.index("start docker-pull")   # the fetch ran to its end
    # the fetch fails 1.5 s in, while the pull (4 s) runs; the script's end is waited past the pull's
    code, events = run_steps(script, tmp_path / "fetch", real=("pull",), fail=("fetch_models",),
                             sleep={"fetch_models": 1.5}, env={"PULL_S": "4"}, settle_s=3.5)
    seen = order(events)
    assert code == 1 and "start docker-pull" in seen and "end docker-pull" not in seen, seen
    assert "start start" not in seen, seen
    # the fetch fails 1.5 s in, after the server started (the pull took 0.2 s): the server is removed
    code, events = run_steps(script, tmp_path / "late", real=("pull", "start"), fail=("fetch_models",),
                             sleep={"fetch_models": 1.5}, env={"PULL_S": "0.2"})
    seen = order(events)
    assert code == 1 and seen.index("end docker-run") < len(seen) - 1 - seen[::-1].index("start docker-rm"), seen
    assert "start wait_healthy" not in seen, seen
    for case in ("ok", "pull", "fetch", "late"):   # the marker that told the warm-up to wait is gone
        assert not (tmp_path / case / "cache" / "models" / ".kiln-arriving").exists(), case


def test_a_script_that_ends_early_stops_its_fetch(tiny_deploy, tmp_path):
    """The script's own fetch step with a python3 that takes 3 s: the server's start fails at once, and the
    fetch, python3 included, ends with the script (nothing fetches on after it)."""
    out, _ = tiny_deploy
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    code, events = run_steps(script, tmp_path, real=("fetch_models",), fail=("start",), sleep={"pull": 1},
                             env={"PY_S": "3"}, settle_s=3.5)
    seen = order(events)
    assert code == 1 and "start fetch-python" in seen and "end fetch-python" not in seen, seen
    # a TERM to the script (a shutdown, an operator's Ctrl-C) during the pull: the same
    code, events = run_steps(script, tmp_path / "term", real=("fetch_models",), sleep={"pull": 1},
                             signal={"pull": "TERM"}, env={"PY_S": "3"}, settle_s=3.5)
    seen = order(events)
    assert code == 1 and "start fetch-python" in seen and "end fetch-python" not in seen, seen
    assert not (tmp_path / "term" / "cache" / "models" / ".kiln-arriving").exists()


def test_cloud_init_says_each_phase_the_container_logs_once(tiny_deploy, tmp_path):
    """relay_phases as the script has it, against a fake docker whose log grows between two looks."""
    out, _ = tiny_deploy
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    logs = tmp_path / "container.log"
    program = "\n".join([function(script, "say"), function(script, "relay_phases"),
                         f"printf 'x\\nkiln: phase preflight: checking the GPU\\n' > {logs}", "relay_phases c1",
                         f"printf 'kiln: phase start: starting ComfyUI\\nComfyUI says\\n' >> {logs}", "relay_phases c1",
                         "relay_phases c1"])
    done = subprocess.run(["/bin/sh", "-c", program], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **fake_docker(tmp_path), "DOCKER_LOGS": str(logs)})
    assert done.returncode == 0 and done.stdout.splitlines() == [
        "kiln-deploy: c1: preflight: checking the GPU", "kiln-deploy: c1: start: starting ComfyUI"], done.stdout


def test_cloud_init_says_each_containers_phases_apart(tiny_deploy, tmp_path):
    """One container's phases said do not hide another's: a fleet relays every server from its first line."""
    out, _ = tiny_deploy
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    logs = tmp_path / "container.log"
    logs.write_text("kiln: phase start: starting ComfyUI\n")
    program = "\n".join([function(script, "say"), function(script, "relay_phases"),
                         "relay_phases kiln-comfyui-0", "relay_phases kiln-comfyui-1", "relay_phases kiln-comfyui-0"])
    done = subprocess.run(["/bin/sh", "-c", program], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **fake_docker(tmp_path), "DOCKER_LOGS": str(logs)})
    assert done.returncode == 0 and done.stdout.splitlines() == [
        "kiln-deploy: kiln-comfyui-0: start: starting ComfyUI", "kiln-deploy: kiln-comfyui-1: start: starting ComfyUI"]


@pytest.mark.parametrize("code", [0, 3])
def test_cloud_init_says_the_servers_phases_while_the_fetch_runs(tiny_deploy, tmp_path, code):
    """wait_fetch as the script has it: a phase the started server logs while the models still arrive is said
    then, not after the fetch (the fake fetch ends only once the phase was said, or after 20 s); the fetch's
    own exit code comes back."""
    out, _ = tiny_deploy
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    logs, said = tmp_path / "container.log", tmp_path / "said.txt"
    fetch = (f"( printf 'kiln: phase warm-up: waiting for the fetch\\n' >> {logs}; i=0; "
             f"until grep -q 'warm-up: waiting' {said} 2> /dev/null || [ $i -ge 200 ]; do sleep 0.1; i=$((i + 1)); done; "
             f"echo 'the fetch ends'; exit {code} ) &")
    program = "\n".join([function(script, "say"), function(script, "relay_phases"), function(script, "wait_fetch"),
                         "launched=kiln-comfyui", fetch, "fetching=$!", "wait_fetch; echo \"fetch code $?\""])
    with said.open("w") as sink:
        done = subprocess.run(["/bin/sh", "-c", program], stdout=sink, stderr=subprocess.PIPE, text=True, timeout=60,
                              env={**os.environ, **fake_docker(tmp_path), "DOCKER_LOGS": str(logs)})
    assert said.read_text().splitlines() == ["kiln-deploy: kiln-comfyui: warm-up: waiting for the fetch",
                                             "the fetch ends", f"fetch code {code}"], done.stderr


def test_a_killed_fetch_ends_the_wait_for_it(tiny_deploy, tmp_path):
    """A fetch killed without a chance to clean up (SIGKILL: its marker stays) still ends wait_fetch, with its code,
    and the status says so."""
    out, _ = tiny_deploy
    script = (out / "cloud-init" / "kiln-deploy.sh").read_text()
    marker = tmp_path / "models" / ".kiln-arriving"
    marker.parent.mkdir()
    marker.write_text("this boot")
    program = "\n".join([function(script, "say"), function(script, "report"), function(script, "relay_phases"),
                         function(script, "wait_fetch"), f"STATUS={tmp_path}/status.json IMAGE=kiln CACHE={tmp_path} "
                         "ARRIVING=.kiln-arriving launched=",
                         "( sleep 0.5; exec sh -c 'kill -KILL $$' ) &", "fetching=$!",
                         "wait_fetch; echo \"fetch code $?\""])
    done = subprocess.run(["/bin/sh", "-c", program], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **fake_docker(tmp_path)})
    assert done.stdout.splitlines() == ["kiln-deploy: failed: the model fetch was killed (signal 9): see the kernel log",
                                        "fetch code 137"] and marker.exists(), done.stdout + done.stderr
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "failed"


def test_the_fetch_script_puts_every_model_in_place_verified_and_resumes_a_cut(tiny_deploy, tmp_path):
    out, files = tiny_deploy
    cache = tmp_path / "cache"
    with ModelServer() as server:
        paths = _serve(server, files)
        server.faults.cut_once[paths["diffusion_models/tiny-dit.safetensors"]] = 100_000
        result = _fetch(out, cache, server.base)
        assert result.returncode == 0, result.stderr
        dit = server.gets(paths["diffusion_models/tiny-dit.safetensors"])
        assert [s.headers.get("range") for s in dit] == [None, "bytes=100000-"]
        assert all(s.headers.get("authorization") == "Bearer hf_secret" for s in server.seen)
        for name, data in files.items():
            assert (cache / "models" / name).read_bytes() == data
        assert not list(cache.rglob("*.part"))
        again = _fetch(out, cache, server.base)
        assert again.returncode == 0 and again.stdout.count("in place, sha256 verified") == 2
        assert len(server.seen) == 3  # nothing downloaded the second time
        assert _fetch(out, cache, server.base, "--check").returncode == 0


def test_the_fetch_script_refuses_a_file_that_does_not_match_and_never_sends_the_token_elsewhere(tiny_deploy, tmp_path):
    out, files = tiny_deploy
    cache = tmp_path / "cache"
    with ModelServer() as server, ModelServer(shown_host="localhost") as cdn:
        paths = _serve(server, files)
        server.faults.corrupt.add(paths["diffusion_models/tiny-dit.safetensors"])
        cdn.files["/blob/ae"] = files["vae/tiny-ae.safetensors"]
        server.faults.redirect[paths["vae/tiny-ae.safetensors"]] = f"{cdn.base}/blob/ae"
        result = _fetch(out, cache, server.base)
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert "tiny-dit.safetensors: downloaded 300000 bytes that do not match the manifest's" in line
        assert not (cache / "models" / "diffusion_models" / "tiny-dit.safetensors").exists()
        assert not list(cache.rglob("*.part"))
        server.faults.corrupt.clear()
        assert _fetch(out, cache, server.base).returncode == 0
        assert [s.headers.get("authorization") for s in cdn.seen] == [None]
    assert (cache / "models" / "vae" / "tiny-ae.safetensors").read_bytes() == files["vae/tiny-ae.safetensors"]


def test_the_check_mode_names_a_missing_or_short_file(tiny_deploy, tmp_path):
    out, files = tiny_deploy
    cache = tmp_path / "cache"
    result = _fetch(out, cache, "http://127.0.0.1:9", "--check")
    assert result.returncode == 1 and "diffusion_models/tiny-dit.safetensors is not in the cache" in result.stderr
    for name, data in files.items():
        (cache / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / "models" / name).write_bytes(data[:-1] if name.startswith("vae") else data)
    result = _fetch(out, cache, "http://127.0.0.1:9", "--check")
    assert result.returncode == 1 and f"vae/tiny-ae.safetensors has {len(files['vae/tiny-ae.safetensors']) - 1} bytes" \
        in result.stderr


def test_cloud_init_user_data_fits_the_smallest_common_limit(published, tmp_path):
    # EC2 takes at most 16 KB of user data (docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html)
    write_build_record(published, "h200", image="z-image-turbo")
    out = tmp_path / "z"
    assert invoke("deploy", "--gpu", "h200", "--image", "z-image-turbo", "--target", "cloud-init", "--out", str(out),
                  root=published).returncode == 0
    assert (out / "cloud-init" / "user-data.yaml").stat().st_size < 16 * 1024


def test_cpu_mode_compose_goes_to_its_own_default_folder(published):
    gpu = invoke("deploy", "--gpu", "4090", "--target", "compose", root=published)
    cpu = invoke("deploy", "--gpu", "4090", "--target", "compose", "--cpu-mode", root=published)
    assert gpu.returncode == 0 and cpu.returncode == 0, gpu.stderr + cpu.stderr
    gpu_file = published / "build" / "deploy" / "comfyui-4090" / "compose.yaml"
    cpu_file = published / "build" / "deploy" / "comfyui-4090-cpu" / "compose.yaml"
    assert "capabilities: [gpu]" in gpu_file.read_text() and "KILN_CPU_MODE" not in gpu_file.read_text()
    assert "KILN_CPU_MODE" in cpu_file.read_text()


def test_an_announced_fetch_holds_the_marker_the_warm_up_waits_on_until_it_ends(tiny_deploy, tmp_path):
    """--announce (a server started beside the fetch on the same machine): the marker names this boot while the
    fetch runs and is gone when it ends, verified, failed, or stopped by a TERM, a hang-up or a Ctrl-C."""
    out, files = tiny_deploy
    marker = tmp_path / "cache" / "models" / json.loads((out / "deploy.json").read_text())["cache"]["arriving_marker"]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    with ModelServer() as server:
        paths = _serve(server, files)
        server.faults.hold_after = 4096
        for ends in ("verified", "failed", "TERM", "HUP", "INT"):
            if ends == "failed":
                server.faults.corrupt.add(paths["diffusion_models/tiny-dit.safetensors"])
            server.faults.release.clear()
            fetching = _fetching(out, tmp_path / "cache", server.base, "--announce")
            try:
                until(lambda: marker.exists() and marker.read_text().strip() == boot, 30, f"the marker ({ends})")
                if ends in ("TERM", "HUP", "INT"):
                    fetching.send_signal(getattr(signal, f"SIG{ends}"))
                else:
                    server.faults.release.set()
                code = fetching.wait(60)
            finally:
                server.faults.release.set()
                fetching.kill()
            assert code == {"verified": 0, "failed": 1, "TERM": 143, "HUP": 129, "INT": 130}[ends], fetching.stderr.read()
            assert not marker.exists(), ends
            shutil.rmtree(tmp_path / "cache")


@pytest.mark.parametrize("extra, says", [
    (("--anounce",), "unknown option --anounce"),
    (("--owner",), "--owner needs a uid"),
    (("--owner", "--announce"), "--owner needs a uid"),
    (("--check", "--announce"), "--check or --announce, not both"),
    (("",), "two arguments needed"),
])
def test_the_fetch_script_refuses_bad_usage_in_one_line_before_anything_is_written(tiny_deploy, tmp_path, extra, says):
    out, _ = tiny_deploy
    done = _fetch(out, tmp_path / "cache", "http://127.0.0.1:9", *extra)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"kiln-fetch: {says}") and "usage: fetch_models.py DEPLOY_JSON CACHE_DIR" in line, line
    assert not (tmp_path / "cache").exists()


def test_a_hang_up_the_caller_ignores_does_not_stop_the_fetch(tiny_deploy, tmp_path):
    """Started under nohup (SIGHUP ignored), an announced fetch outlives a dropped session and ends verified."""
    out, files = tiny_deploy
    marker = tmp_path / "cache" / "models" / json.loads((out / "deploy.json").read_text())["cache"]["arriving_marker"]
    with ModelServer() as server:
        _serve(server, files)
        server.faults.hold_after = 4096
        fetching = _fetching(out, tmp_path / "cache", server.base, "--announce",
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
        try:
            until(marker.exists, 30, "the marker")
            fetching.send_signal(signal.SIGHUP)   # obeyed, it would end the fetch with 129 at once
            server.faults.release.set()
            assert fetching.wait(60) == 0, fetching.stderr.read()
        finally:
            server.faults.release.set()
            fetching.kill()
    assert not marker.exists()
