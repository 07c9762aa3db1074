"""versions.lock: its writer reproduces it, --check catches hand edits, `invoke lock` re-resolves it."""

import re

import pytest

from kiln.data.lock import load_lock
from kiln.lock.write import lock_text
from tests.conftest import ROOT, invoke


def test_writer_reproduces_the_committed_lock_byte_for_byte(project):
    lock = load_lock(project.lock_path)
    assert lock_text(project.lock_path.read_text(), lock.name, lock.packages) == project.lock_path.read_text()


def test_lock_holds_the_pinned_stack(project):
    lock = load_lock(project.lock_path)
    versions = {name: lock.package(name).version for name in
                ("torch", "xformers", "torchvision", "torchaudio", "nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12",
                 "nvidia-cublas-cu12", "triton")}
    assert versions == {"torch": "2.3.1", "xformers": "0.0.27", "torchvision": "0.18.1", "torchaudio": "2.3.1",
                        "nvidia-cudnn-cu12": "8.9.2.26", "nvidia-cuda-runtime-cu12": "12.1.105",
                        "nvidia-cublas-cu12": "12.1.3.1", "triton": "2.3.1"}
    assert "torch ==2.3.1" in lock.package("xformers").requires
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.sha256) for p in lock.packages.values())
    assert all(p.wheel.endswith(".whl") for p in lock.packages.values())
    assert lock.comfyui.commit == "b07f116dea4e00b42df3fbbe045f4c8c76c9d97b"


def test_check_passes_on_the_committed_lock():
    result = invoke("lock", "--check")
    assert result.returncode == 0, result.stderr
    assert "versions.lock is current: card 62 packages, zimage 78 packages" in result.stdout


def _edit(root, old, new):
    path = root / "versions.lock"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_check_fails_after_a_stack_pin_is_edited(project_copy):
    _edit(project_copy, 'torch = "2.3.1"', 'torch = "2.3.0"')
    result = invoke("lock", "--check", root=project_copy)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "[stacks.card.stack], [stacks.card.comfyui] or [stacks.card.resolve] changed since [stacks.card.packages] was resolved" in lines[0] and "invoke lock" in lines[0]
    assert "Traceback" not in result.stderr


def test_check_fails_after_a_resolved_version_is_edited(project_copy):
    _edit(project_copy, '[stacks.card.packages.torch]\nversion = "2.3.1"', '[stacks.card.packages.torch]\nversion = "2.3.0"')
    result = invoke("lock", "--check", root=project_copy)
    assert result.returncode == 2
    assert "[stacks.card.packages.torch] was edited by hand" in result.stderr and "more)" in result.stderr


def test_check_fails_on_a_malformed_hash(project_copy):
    lock = load_lock(project_copy / "versions.lock")
    digest = lock.package("numpy").sha256
    _edit(project_copy, digest, digest[:-4] + "zzzz")
    result = invoke("lock", "--check", root=project_copy)
    assert result.returncode == 2 and "key 'stacks.card.packages.numpy.sha256'" in result.stderr and "64 lowercase hex digits" in result.stderr


@pytest.mark.network
def test_relock_from_the_index_reproduces_the_lock_and_keeps_hand_written_comments(project_copy):
    """Real resolution against the package index (one run: it takes half a minute): same inputs, the same
    lock byte for byte, with the comments written by hand into the hand-kept sections where they were."""
    note = "# pinned to the card's stack; see FACTS section 1"
    old, new = 'xformers = "0.0.27"\n', f'xformers = "0.0.27"  {note}\n# cuDNN as torch carries it\n'
    _edit(project_copy, old, new)
    result = invoke("lock", root=project_copy)
    assert result.returncode == 0, result.stderr
    assert "stack card: 62 packages, unchanged" in result.stdout and "stack zimage: 78 packages, unchanged" in result.stdout
    text = (project_copy / "versions.lock").read_text()
    assert f'xformers = "0.0.27"  {note}\n# cuDNN as torch carries it\ncuda = "12.1"' in text
    assert text == (ROOT / "versions.lock").read_text().replace(old, new, 1)
    assert invoke("lock", "--check", root=project_copy).returncode == 0


def test_check_fails_on_a_marker_that_excludes_the_image(project_copy):
    """Written as `invoke lock` would (entry digest current), so only the marker rule can object."""
    path = project_copy / "versions.lock"
    packages = dict(load_lock(path).packages)
    name = next(key for key, pkg in packages.items() if pkg.marker)
    packages[name] = packages[name].model_copy(update={"marker": "platform_machine == 'aarch64'"})
    path.write_text(lock_text(path.read_text(), "card", packages))
    result = invoke("lock", "--check", root=project_copy)
    assert result.returncode == 2 and "is only for 'platform_machine == 'aarch64''" in result.stderr


def _entry(lock_text: str, name: str) -> str:
    start = lock_text.index(f"[stacks.card.packages.{name}]\n")
    end = lock_text.index("\n[", start + 1)
    return lock_text[start:end]


@pytest.mark.parametrize("field, pattern", [
    ("url", r'url = "https://files\.pythonhosted\.org/'),
    ("sha256", r'\nsha256 = "[0-9a-f]{64}"'),
    ("requires", r'"typing-extensions[^"]*"'),
    ("version", r'\nversion = "[^"]*"'),
])
def test_check_catches_a_hand_edit_of_any_package_field(project_copy, field, pattern):
    """Offline: the entry no longer matches its own digest, and the package is named."""
    path = project_copy / "versions.lock"
    text = path.read_text()
    entry = _entry(text, "torch")
    found = re.search(pattern, entry)
    assert found, field
    changed = {"url": 'url = "https://mirror.example/', "sha256": found.group()[:-2] + "0\"",
               "requires": '"typing-extensions>=9"', "version": '\nversion = "2.3.2"'}[field]
    path.write_text(text.replace(entry, entry.replace(found.group(), changed, 1), 1))
    result = invoke("lock", "--check", root=project_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "[stacks.card.packages.torch] was edited by hand" in result.stderr, result.stderr


def test_check_catches_a_removed_package_entry(project_copy):
    path = project_copy / "versions.lock"
    text = path.read_text()
    path.write_text(text.replace(_entry(text, "torchsde") + "\n", "", 1))
    result = invoke("lock", "--check", root=project_copy)
    assert result.returncode == 2 and "added or removed by hand" in result.stderr


def test_each_stack_has_its_own_digest(project_copy):
    path = project_copy / "versions.lock"
    card, zimage = load_lock(path), load_lock(path, stack="zimage")
    assert card.name == "card" and zimage.name == "zimage" and card.digest != zimage.digest
    _edit(project_copy, 'title = "Z-Image-Turbo:', 'title = "Z-Image-Turbo (edited):')
    assert load_lock(path).digest == card.digest
    assert load_lock(path, stack="zimage").digest != zimage.digest


def test_the_zimage_stack_keeps_the_cards_cuda_and_torch(project):
    card, zimage = project.lock, project.stack_lock("zimage")
    assert zimage.stack == card.stack
    assert (zimage.comfyui.version, zimage.comfyui.commit) == ("0.3.74", "90b3995ec842335e44d70e0521ff6ff6c3ff9aaa")
    assert zimage.package("torch").version == "2.3.1" and zimage.package("xformers").version == "0.0.27"
    assert zimage.package("comfyui-frontend-package").version == "1.30.6"
    assert zimage.package("torch").sha256 == card.package("torch").sha256


def test_a_spec_naming_an_unknown_stack_is_refused(project_copy):
    spec = project_copy / "images" / "z-image-turbo.yaml"
    spec.write_text(spec.read_text().replace("stack: zimage", "stack: zimag"))
    result = invoke("check", "--gpu", "4090", "--image", "z-image-turbo", root=project_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "images/z-image-turbo.yaml stack: unknown stack 'zimag'" in result.stderr and "card, zimage" in result.stderr
    typo = invoke("check", "--gpu", "4090", "--image", "z-image-turbo", "--stack", "crad", root=project_copy)
    assert typo.returncode == 2 and "--stack: unknown stack 'crad'" in typo.stderr


def test_a_stale_second_stack_fails_the_check(project_copy):
    _edit(project_copy, '"transformers>=4.50.3"', '"transformers>=4.51"')
    result = invoke("lock", "--check", root=project_copy)
    assert result.returncode == 2 and "[stacks.zimage.stack], [stacks.zimage.comfyui] or [stacks.zimage.resolve] changed" in result.stderr
