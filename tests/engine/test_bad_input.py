"""Every task, given broken arguments or broken data files: one line on stderr naming the problem,
exit 2, no traceback, and nothing left behind (containers, images, temp dirs, build output)."""

import json

import pytest

from tests.conftest import invoke
from tests.engine.tap import EngineTap

# (id, task and arguments, fragment the one error line must hold); {tmp} is a scratch folder,
# {file} an existing plain file there.
ARGUMENTS = [
    ("missing-gpu", ["check"], "did not receive required positional arguments: 'gpu'"),
    ("unknown-flag", ["check", "--gpu", "4090", "--bogus"], "No idea what '--bogus' is"),
    ("unknown-gpu", ["render", "--gpu", "rtx6090"], "unknown GPU 'rtx6090'"),
    ("gpu-newline", ["check", "--gpu", "rtx\n6090"], "unknown GPU 'rtx\\n6090'"),
    ("unknown-image", ["check", "--gpu", "4090", "--image", "sdxl"], "unknown image 'sdxl'"),
    ("image-shell", ["build", "--gpu", "4090", "--image", "x; rm -rf /"], "unknown image 'x; rm -rf /'"),
    ("render-out-file", ["render", "--gpu", "4090", "--out", "{file}"], "not a directory"),
    ("schema-out-file", ["schema", "--out", "{file}"], "cannot write the schemas"),
    ("base-unknown", ["base", "--name", "nosuch"], "unknown base 'nosuch'"),
    ("ca-missing", ["build", "--gpu", "4090", "--ca-bundle", "{tmp}/none.pem"], "CA bundle not found"),
    ("src-missing", ["build", "--gpu", "4090", "--comfyui-src", "{tmp}/nowhere"], "ComfyUI source not found"),
    ("smoke-json-dir", ["smoke", "--gpu", "4090", "--json", "{tmp}"], "is a directory"),
    ("smoke-json-nofolder", ["smoke", "--gpu", "4090", "--json", "{tmp}/no/r.json"], "does not exist"),
    ("report-missing", ["report", "--json", "{tmp}/none.json", "--html", "{tmp}/r.html"], "file not found"),
    ("report-not-json", ["report", "--json", "{file}", "--html", "{tmp}/r.html"], "malformed JSON"),
    ("report-no-facts", ["report", "--json", "{tmp}/bare.json", "--html", "{tmp}/r.html"], "carries no image facts"),
    ("run-port-zero", ["run", "--gpu", "4090", "--port", "0"], "port 0 is out of range"),
    ("run-port-high", ["run", "--gpu", "4090", "--port", "70000"], "port 70000 is out of range"),
    ("run-port-word", ["run", "--gpu", "4090", "--port", "eighty"], "'eighty' is not a port number"),
    ("run-port-shell", ["run", "--gpu", "4090", "--port", "80;ls"], "'80;ls' is not a port number"),
    ("run-gpus-shell", ["run", "--gpu", "4090", "--gpus", "0;ls"], "'0;ls' is not a GPU selection"),
    ("run-gpus-empty", ["run", "--gpu", "4090", "--gpus", ""], "is not a GPU selection"),
    ("run-timeout", ["run", "--gpu", "4090", "--timeout", "-5"], "-5 is not positive"),
    ("run-cache-newline", ["run", "--gpu", "4090", "--cache", "a\nb"], "is not a usable path"),
    ("run-cache-missing", ["run", "--gpu", "4090", "--cache", "{tmp}/nocache"], "cache path does not exist"),
    ("stop-name-shell", ["stop", "--name", "a;b"], "'a;b' is not a container name"),
    ("stop-name-newline", ["stop", "--name", "a\nb"], "is not a container name"),
    ("cache-on-file", ["provision.cache", "--path", "{file}"], "exists and is not a directory"),
    ("cache-under-file", ["provision.cache", "--path", "{file}/x"], "Not a directory"),
    ("clean-unknown-flag", ["clean", "--everything"], "No idea what '--everything' is"),
    ("host-cache-newline", ["host.check", "--gpu", "4090", "--cache", "a\nb"], "is not a usable path"),
    ("host-json-nofolder", ["host.check", "--gpu", "4090", "--json", "{tmp}/no/h.json"], "does not exist"),
    ("host-unknown-gpu", ["host.check", "--gpu", "b200"], "unknown GPU 'b200'"),
    ("image-not-yaml-map", ["check", "--gpu", "4090", "--image", "{file}"], "not a mapping of keys"),
    ("smoke-bad-tag", ["smoke", "--gpu", "4090", "--image", "Bad:Tag!!"], "cannot look up image 'Bad:Tag!!'"),
    ("run-bad-tag", ["run", "--gpu", "4090", "--image", "x:y:z"], "cannot look up image 'x:y:z'"),
    ("render-out-under-file", ["render", "--gpu", "4090", "--out", "{file}/ctx"], "cannot create the output folder"),
    ("report-list", ["report", "--json", "{tmp}/list.json", "--html", "{tmp}/r.html"], "not a smoke report"),
    ("report-bad-facts", ["report", "--json", "{tmp}/badfacts.json", "--html", "{tmp}/r.html"],
     "its 'image_facts' are unreadable"),
]

# (id, file, text replaced, replacement, task, fragment)
DATA = [
    ("lock-typo", "versions.lock", 'cuda = "12.1"', 'cuda_version = "12.1"', ["lock", "--check"], "unknown key 'stacks.card.stack.cuda_version'"),
    ("lock-syntax", "versions.lock", 'cuda = "12.1"', "cuda = 12.1.0", ["check", "--gpu", "4090"], "malformed TOML"),
    ("gpus-syntax", "gpus.yaml", "    vram_gb: 24\n", "    vram_gb: [24\n", ["gpus"], "malformed YAML"),
    ("gpus-type", "gpus.yaml", "    vram_gb: 24\n", "    vram_gb: lots\n", ["gpus"], "key 'profiles.4090.vram_gb'"),
    ("spec-port", "images/comfyui.yaml", "port: 8188", "port: 70000", ["render", "--gpu", "4090"], "key 'server.port'"),
    ("spec-nul", "images/comfyui.yaml", "[--preview-method, none,", '["--preview-method\\0", none,', ["build", "--gpu", "4090"],
     "NUL or newline"),
    ("spec-env-name", "images/comfyui.yaml", "env: {}", "env: {1BAD: x}", ["check", "--gpu", "4090"], "'1BAD' is not a valid name under 'env'"),
    ("spec-env-bool", "images/comfyui.yaml", "env: {}", "env: {DEBUG: true}", ["smoke", "--gpu", "4090"], "quote the value"),
    ("gpus-empty", "gpus.yaml", None, "", ["gpus"], "the file is empty or not a mapping of keys"),
    ("gpus-duplicate", "gpus.yaml", '  "4080":', '  "4090":', ["run", "--gpu", "4090"], "key '4090' is written twice"),
    ("gpus-alias-clash", "gpus.yaml", "aliases: [rtx4090, geforce-rtx-4090]", "aliases: [rtx4090, rtx4080]",
     ["check", "--gpu", "rtx4080"], "names both profiles"),
    ("gpus-unquoted", "gpus.yaml", '  "4090":', "  4090:", ["render", "--gpu", "4090"], "write the key in quotes"),
    ("lock-default-base", "versions.lock", 'default_base = "debian-bookworm"', 'default_base = "debian-bookwrm"',
     ["base"], "is not one of [bases]"),
    ("spec-recipe-typo", "images/z-image-turbo.yaml", "recipe: {steps: 8,", "recipe: {stepz: 8,",
     ["check", "--gpu", "h200", "--image", "z-image-turbo"], "unknown key 'warmup.recipe.stepz'"),
    ("workflow-not-api", "images/workflows/z-image-turbo.json", None, '{"1": 5}',
     ["check", "--gpu", "h200", "--image", "z-image-turbo"], "not in ComfyUI's API format"),
    ("report-gpus-broken", "gpus.yaml", "    vram_gb: 24\n", "    vram_gb: [24\n",
     ["report", "--json", "r.json", "--html", "r.html", "--gpu", "4090"], "malformed YAML"),
]


@pytest.fixture
def state(tmp_path, monkeypatch):
    """What a command made: its requests to the engine (through a tap of this test's own), its temp folders
    (TMPDIR of its own) and the project's build output."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    with EngineTap(tmp_path) as tap:
        monkeypatch.setenv("DOCKER_HOST", tap.docker_host)
        yield lambda root: {"engine": tap.making(), "temp": sorted(p.name for p in temp.iterdir()),
                            "build": sorted(str(p) for p in (root / "build").rglob("*")) if (root / "build").exists() else []}


def _one_error(result, fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-500:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args, fragment", [r[1:] for r in ARGUMENTS], ids=[r[0] for r in ARGUMENTS])
def test_broken_arguments(state, project_copy, tmp_path, args, fragment):
    (tmp_path / "plain.txt").write_text("not json\n")
    (tmp_path / "bare.json").write_text(json.dumps({"schema": 1, "checks": []}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "badfacts.json").write_text(json.dumps({"checks": [], "image_facts": {"profile": {"name": 4090}}}))
    args = [a.format(tmp=tmp_path, file=tmp_path / "plain.txt") for a in args]
    before = state(project_copy)
    _one_error(invoke(*args, root=project_copy), fragment)
    assert state(project_copy) == before


@pytest.mark.parametrize("name, old, new, args, fragment", [r[1:] for r in DATA], ids=[r[0] for r in DATA])
def test_broken_data_files(state, project_copy, name, old, new, args, fragment):
    path = project_copy / name
    text = path.read_text()
    assert old is None or old in text
    path.write_text(new if old is None else text.replace(old, new, 1))
    (project_copy / "r.json").write_text(json.dumps({"checks": []}))
    before = state(project_copy)
    _one_error(invoke(*args, root=project_copy), fragment)
    assert state(project_copy) == before
