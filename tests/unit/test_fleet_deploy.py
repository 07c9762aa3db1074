"""`invoke deploy --gpus N` (compose and cloud-init), `invoke balancer.render` and the Kubernetes autoscaling
files: pinned by golden files and checked by each tool (docker-compose config, HAProxy's own `haproxy -c`,
cloud-init schema, shellcheck, kubernetes-validate, KEDA's published schema); bad input is one line, exit 2,
nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_FILES, ROOT, invoke
from tests.standin.records import DIGEST, REGISTRY, write_build_record
from tests.unit.deploy_steps import order, run_steps
from tests.unit.test_deploy import BIN, KEDA, _carried, _deploy, _refused, _tree

GOLDEN = ROOT / "tests" / "golden" / "deploy" / "fleet"
HAPROXY = "/usr/sbin/haproxy"


@pytest.fixture
def published(project_copy):
    for gpu in ("4090", "h200"):
        write_build_record(project_copy, gpu)
    return project_copy


def _golden(got: dict[str, str], folder: Path) -> None:
    for name, text in got.items():
        golden = folder / name
        if os.environ.get("KILN_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert text == golden.read_text(), f"{golden} differs; KILN_UPDATE_GOLDEN=1 rewrites goldens"


def _haproxy_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("target", ["compose", "cloud-init"])
def test_fleet_golden_and_deterministic(published, tmp_path, target):
    out = tmp_path / "out"
    result = _deploy(published, "h200", out, target, "--gpus", "2")
    assert result.returncode == 0, result.stderr
    got = _tree(out)
    expected = {"compose": {"deploy.json", "compose.yaml", "balancer/haproxy.cfg"},
                "cloud-init": {"deploy.json", "cloud-init/user-data.yaml", "cloud-init/kiln-deploy.sh",
                               "cloud-init/haproxy.cfg"}}[target]
    assert set(got) == expected
    _golden(got, GOLDEN / "h200" / target)
    assert _deploy(published, "h200", out, target, "--gpus", "2").returncode == 0 and _tree(out) == got
    assert "servers behind one balancer" in result.stdout


def test_the_compose_fleet_pins_each_server_to_its_gpu_and_publishes_one_endpoint(published, tmp_path):
    _deploy(published, "h200", tmp_path / "out", "compose", "--gpus", "3")
    path = tmp_path / "out" / "compose.yaml"
    config = subprocess.run(["docker-compose", "-f", str(path), "config"], capture_output=True, text=True)
    assert config.returncode == 0, config.stderr
    services = yaml.safe_load(config.stdout)["services"]
    assert set(services) == {"comfyui-0", "comfyui-1", "comfyui-2", "balancer"}
    for i in range(3):
        server = services[f"comfyui-{i}"]
        [device] = server["deploy"]["resources"]["reservations"]["devices"]
        assert device["device_ids"] == [str(i)] and server["image"] == f"{REGISTRY}/kiln/comfyui@{DIGEST}"
        assert server["ports"] == [f"127.0.0.1:{9188 + i}:9188/tcp"]   # metrics only; prompts go through the balancer
    balancer = services["balancer"]
    assert balancer["ports"] == ["127.0.0.1:8188:8188/tcp", "127.0.0.1:8404:8404/tcp"]
    d = json.loads((tmp_path / "out" / "deploy.json").read_text())
    assert balancer["image"] == d["fleet"]["balancer_image"] and d["fleet"]["servers"] == 3
    assert balancer["volumes"] == [f"{tmp_path / 'out' / 'balancer' / 'haproxy.cfg'}:/etc/kiln/haproxy.cfg:ro"]
    cfg = (tmp_path / "out" / "balancer" / "haproxy.cfg").read_text()
    assert [line.split()[1:3] for line in cfg.splitlines() if line.strip().startswith("server ")] == \
        [[f"comfyui-{i}", f"comfyui-{i}:8188"] for i in range(3)]


def test_the_cpu_mode_fleet_asks_for_no_gpu(published, tmp_path):
    _deploy(published, "h200", tmp_path / "out", "compose", "--gpus", "2", "--cpu-mode")
    services = yaml.safe_load((tmp_path / "out" / "compose.yaml").read_text())["services"]
    assert all("deploy" not in s and s["environment"]["KILN_CPU_MODE"] == "1"
               for name, s in services.items() if name != "balancer")


@pytest.mark.parametrize("target", ["compose", "cloud-init"])
def test_every_rendered_balancer_configuration_passes_haproxys_own_check(published, tmp_path, target):
    _deploy(published, "4090", tmp_path / "out", target, "--gpus", "8")
    name = {"compose": "balancer/haproxy.cfg", "cloud-init": "cloud-init/haproxy.cfg"}[target]
    result = _haproxy_check(tmp_path / "out" / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxys_check_catches_a_wrong_directive(published, tmp_path):
    _deploy(published, "4090", tmp_path / "out", "compose", "--gpus", "2")
    path = tmp_path / "out" / "balancer" / "haproxy.cfg"
    path.write_text(path.read_text().replace("retry-on conn-failure", "retry-on conn-failures"))
    assert _haproxy_check(path).returncode != 0


# A digest of real entropy and a long registry name (an all-"a" digest would compress to nothing)
REAL_DIGEST = "sha256:" + hashlib.sha256(b"kiln").hexdigest()
LONG_REGISTRY = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/team"


def test_the_cloud_init_fleet_carries_the_balancer_and_passes_its_tools(published, tmp_path):
    write_build_record(published, "h200", image="z-image-turbo", registry=LONG_REGISTRY, digest=REAL_DIGEST)
    out = tmp_path / "out"
    result = _deploy(published, "h200", out, "cloud-init", "--gpus", "8", "--image", "z-image-turbo")
    assert result.returncode == 0, result.stderr
    folder = out / "cloud-init"
    schema = subprocess.run(["cloud-init", "schema", "--config-file", str(folder / "user-data.yaml")],
                            capture_output=True, text=True)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    sc = subprocess.run([BIN / "shellcheck", str(folder / "kiln-deploy.sh")], capture_output=True, text=True)
    assert sc.returncode == 0, sc.stdout
    data = yaml.safe_load((folder / "user-data.yaml").read_text())
    carried = {f["path"]: _carried(f) for f in data["write_files"]}
    assert carried["/etc/kiln/haproxy.cfg"] == (folder / "haproxy.cfg").read_text()
    assert carried["/usr/local/sbin/kiln-deploy"] == (folder / "kiln-deploy.sh").read_text()
    assert (folder / "user-data.yaml").stat().st_size < 16 * 1024   # EC2's user-data limit, with 8 servers
    script = (folder / "kiln-deploy.sh").read_text()
    code, events = run_steps(script, tmp_path, sleep={"pull": 0.5, "fetch_models": 1})
    starts = [e.split()[1] for e in order(events) if e.startswith("start ")]
    assert code == 0 and [name for name in starts if name != "fetch_models"] == [
        "check_driver", "wait_docker", "check_toolkit", "check_balancer", "mount_nvme", "prepare_cache",
        "pull", "start", "wait_healthy", "start_balancer"], starts
    at = {f"{what} {name}": t for t, what, name in events}
    assert at["end prepare_cache"] < at["start fetch_models"] < at["end pull"] < at["start start"]
    assert at["start start"] < at["end fetch_models"] < at["start wait_healthy"]
    # the fetch fails after the 8 servers started: all 8 are removed, nothing waits for health
    code, events = run_steps(script, tmp_path / "late", real=("pull", "start", "start_one"), fail=("fetch_models",),
                             sleep={"fetch_models": 1.5}, env={"SERVERS": "8"})
    seen = order(events)
    after_runs = seen[len(seen) - 1 - seen[::-1].index("end docker-run"):]
    assert code == 1 and seen.count("end docker-run") == 8 and after_runs.count("start docker-rm") == 8, seen
    assert "start wait_healthy" not in seen, seen
    assert "SERVERS=8" in script and "HOST_PORT=18188" in script and "BALANCER_SERIES=2.6" in script
    cfg = (folder / "haproxy.cfg").read_text()
    assert '"${KILN_BIND-127.0.0.1}:8188"' in cfg and "server comfyui-7 127.0.0.1:18195" in cfg
    assert "check port 19195 agent-check agent-port 19295" in cfg


@pytest.mark.parametrize("gpus", ["0", "101", "two"])
def test_a_gpu_count_out_of_range_is_refused(published, tmp_path, gpus):
    _refused(_deploy(published, "4090", tmp_path / "out", "compose", "--gpus", gpus), "is not a number of GPUs",
             tmp_path / "out")


@pytest.mark.parametrize("target", ["k8s", "all"])
def test_gpus_is_for_compose_and_cloud_init_only(published, tmp_path, target):
    _refused(_deploy(published, "4090", tmp_path / "out", target, "--gpus", "2"), "is for compose and cloud-init",
             tmp_path / "out")


def test_one_gpu_renders_the_single_server_files(published, tmp_path):
    _deploy(published, "4090", tmp_path / "one", "compose", "--gpus", "1")
    _deploy(published, "4090", tmp_path / "plain", "compose")
    assert _tree(tmp_path / "one") == _tree(tmp_path / "plain")


# --- invoke balancer.render: servers by address, as a host without containers runs them ---

def _render(tmp_path, *args) -> subprocess.CompletedProcess:
    return invoke("balancer.render", *args, "--out", str(tmp_path / "bal"))


def test_balancer_render_golden_and_valid(tmp_path):
    result = _render(tmp_path, "--backends", "127.0.0.1:8288,127.0.0.1:8289,10.0.0.7:8188", "--port", "8188")
    assert result.returncode == 0, result.stderr
    got = _tree(tmp_path / "bal")
    assert set(got) == {"haproxy.cfg", "balancer.json"}
    _golden(got, GOLDEN / "balancer")
    assert _haproxy_check(tmp_path / "bal" / "haproxy.cfg").returncode == 0
    record = json.loads(got["balancer.json"])
    assert [(b["host"], b["port"], b["metrics_port"], b["agent_port"]) for b in record["backends"]] == \
        [("127.0.0.1", 8288, 9288, 9388), ("127.0.0.1", 8289, 9289, 9389), ("10.0.0.7", 8188, 9188, 9288)]


@pytest.mark.parametrize("backends, fragment", [
    ("127.0.0.1:8288,", "no backend given"), ("127.0.0.1", "is not HOST:PORT"), ("127.0.0.1:65000", "is not HOST:PORT"),
    ("127.0.0.1:8288,127.0.0.1:9288", "two backends share a port"),
    ("127.0.0.1:8188", "the balancer's port would be one of")])
def test_balancer_render_refuses_bad_backends(tmp_path, backends, fragment):
    _refused(_render(tmp_path, "--backends", backends), fragment, tmp_path / "bal")


def test_balancer_render_refuses_the_same_port_twice(tmp_path):
    _refused(_render(tmp_path, "--backends", "127.0.0.1:8288", "--port", "8404"), "--port and --stats-port are both",
             tmp_path / "bal")


def test_balancer_render_leaves_a_foreign_folder_alone(tmp_path):
    (tmp_path / "bal").mkdir()
    (tmp_path / "bal" / "notes.txt").write_text("mine")
    result = _render(tmp_path, "--backends", "127.0.0.1:8288")
    assert result.returncode == 2 and "not an earlier kiln balancer configuration" in result.stderr
    assert [p.name for p in (tmp_path / "bal").iterdir()] == ["notes.txt"]


# --- Kubernetes: autoscaling on the queue, disruption budget, drain before SIGTERM ---

@pytest.fixture(scope="module")
def k8s(tmp_path_factory):
    """The h200 profile's k8s target, rendered once for the tests below (each reads or copies it)."""
    root = tmp_path_factory.mktemp("k8s") / "proj"
    for name in PROJECT_FILES:
        src, dest = ROOT / name, root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir() else shutil.copy2(src, dest)
    write_build_record(root, "h200")
    out = root.parent / "out"
    assert _deploy(root, "h200", out, "k8s").returncode == 0
    return out / "k8s"


def test_the_scaled_object_passes_kedas_schema_and_scales_on_the_exported_queue(k8s):
    path = k8s / "scaledobject.yaml"
    result = subprocess.run([BIN / "check-jsonschema", "--schemafile", KEDA, path], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    so = yaml.safe_load(path.read_text())
    deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
    assert so["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [trigger] = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["query"] == 'sum(kiln_queue_length{app_kubernetes_io_name="kiln-comfyui-h200"})'
    exporter = (ROOT / "provision" / "container" / "fleet" / "metrics.py").read_text()
    assert '"kiln_queue_length"' in exporter   # the scaled metric is one the exporter writes
    assert "replicas" not in deployment["spec"]   # KEDA owns the count


@pytest.mark.parametrize("change", [("minReplicaCount", "minReplicaCont"), ("threshold:", "treshold:"),
                                    ("keda.sh/v1alpha1", "keda.sh/v1")])
def test_kedas_schema_catches_a_wrong_field(k8s, tmp_path, change):
    path = tmp_path / "scaledobject.yaml"
    path.write_text((k8s / "scaledobject.yaml").read_text().replace(*change))
    result = subprocess.run([BIN / "check-jsonschema", "--schemafile", KEDA, path], capture_output=True, text=True)
    assert result.returncode != 0, change


def test_the_keda_schema_cites_its_source():
    doc = json.loads(KEDA.read_text())
    assert "kedacore/keda/blob/v2.20.2/config/crd/bases/keda.sh_scaledobjects.yaml" in doc["$comment"]


def test_the_pod_drains_before_sigterm_and_a_budget_keeps_disruptions_to_one(k8s):
    """(kubernetes-validate checks pdb.yaml with the other manifests: test_deploy.py)"""
    folder = k8s
    pdb = yaml.safe_load((folder / "pdb.yaml").read_text())
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "kiln-comfyui-h200"}}}
    pod = yaml.safe_load((folder / "deployment.yaml").read_text())["spec"]["template"]
    [container] = pod["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"] and "-m fleet.drain" in command[2] and "--limit-s 110" in command[2]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 120   # the drain's 110 s plus the stop's 10
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "9188",
                                              "prometheus.io/path": "/metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}


def test_the_drain_command_in_the_pod_runs_as_written(k8s, tmp_path):
    """The preStop line, run from the payload folder as the image lays it out, finds fleet.drain."""
    pod = yaml.safe_load((k8s / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    line = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][2]
    line = line.replace("cd /opt/kiln/payload", f"cd {ROOT / 'provision' / 'container'}")
    line = line.replace("/opt/venv/bin/python", sys.executable).replace("/tmp/kiln/draining", str(tmp_path / "d"))
    line = line.replace("--limit-s 110", "--limit-s 1").replace("--settle-s 5", "--settle-s 0")
    result = subprocess.run(["/bin/sh", "-c", line.replace("127.0.0.1:8188", "127.0.0.1:9")], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1 and '"left": "ComfyUI does not answer"' in result.stdout, result.stderr
    assert (tmp_path / "d").exists()


def test_user_data_over_what_a_cloud_takes_is_refused_and_nothing_is_written(published, tmp_path):
    """64 servers: HAProxy's configuration alone takes the user data past EC2's 16 KB."""
    write_build_record(published, "h200", image="z-image-turbo", registry=LONG_REGISTRY, digest=REAL_DIGEST)
    out = tmp_path / "out"
    result = _deploy(published, "h200", out, "cloud-init", "--gpus", "64", "--image", "z-image-turbo")
    _refused(result, "over the 16384 bytes a cloud takes", out)
    assert "fewer servers per VM (--gpus)" in result.stderr
