"""What `--bake-models` puts in the build context, without an engine: every manifest file verified (present,
its size, its sha256, no link followed) before anything is built, streamed from the verified descriptor, and a
change after verification stops the stream; the context is a tar any tar reader takes."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from kiln.data.image import ModelFile
from kiln.engine.context_tar import Entry, context_entries, stream_tar
from kiln.errors import KilnError
from kiln.models.bake import bake_labels, close_all, verify_models


def _model(folder: str, file: str, data: bytes) -> ModelFile:
    return ModelFile(role="vae", folder=folder, file=file, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                     source={"repo": "kiln/test", "revision": "a" * 40, "path": file})


@pytest.fixture
def cache(tmp_path):
    (tmp_path / "models" / "vae").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints").mkdir()
    return tmp_path


def _put(cache, folder, file, data):
    (cache / "models" / folder / file).write_bytes(data)
    return _model(folder, file, data)


def test_verified_files_stream_their_exact_bytes_and_carry_labels(cache):
    a = _put(cache, "vae", "a.safetensors", os.urandom(3000))
    b = _put(cache, "checkpoints", "b.safetensors", os.urandom(70000))
    baked = verify_models((a, b), cache)
    try:
        assert [f.context_name for f in baked] == ["baked-models/vae/a.safetensors", "baked-models/checkpoints/b.safetensors"]
        assert b"".join(baked[1].chunks()) == (cache / "models" / "checkpoints" / "b.safetensors").read_bytes()
        assert bake_labels(baked) == {"io.kiln.models": "baked",
                                      "io.kiln.models.sha256": f"vae/a.safetensors={a.sha256},checkpoints/b.safetensors={b.sha256}"}
    finally:
        close_all(baked)


def test_every_bad_file_is_named_in_one_error(cache):
    good = _put(cache, "vae", "good.safetensors", b"g" * 100)
    flipped = _model("vae", "flipped.safetensors", b"x" * 100)
    (cache / "models" / "vae" / "flipped.safetensors").write_bytes(b"y" * 100)
    short = _model("vae", "short.safetensors", b"s" * 100)
    (cache / "models" / "vae" / "short.safetensors").write_bytes(b"s" * 99)
    missing = _model("checkpoints", "missing.safetensors", b"m")
    (cache / "models" / "checkpoints" / "linked.safetensors").symlink_to(cache / "models" / "vae" / "good.safetensors")
    linked = _model("checkpoints", "linked.safetensors", b"g" * 100)
    with pytest.raises(KilnError) as err:
        verify_models((good, flipped, short, missing, linked), cache)
    line = err.value.line()
    assert f"vae/flipped.safetensors has sha256 {hashlib.sha256(b'y' * 100).hexdigest()[:16]}" in line
    assert "vae/short.safetensors has 99 bytes, the manifest says 100" in line
    assert "checkpoints/missing.safetensors is missing" in line
    assert "checkpoints/linked.safetensors is a symbolic link" in line
    assert "good.safetensors" not in line and "invoke models.fetch" in err.value.fix


def test_a_file_changed_after_verification_stops_the_stream(cache):
    model = _put(cache, "vae", "a.safetensors", b"a" * 5000)
    [baked] = verify_models((model,), cache)
    try:
        with open(cache / "models" / "vae" / "a.safetensors", "r+b") as handle:
            handle.write(b"b")
        sent = []
        with pytest.raises(KilnError, match="changed in the cache while it was baked"):
            for block in stream_tar([Entry(baked.context_name, model.size, 0o644, baked.chunks)]):
                sent.append(block)
        # the changed file's last chunk was held back: the engine never received the whole changed file
        assert b"b" + b"a" * 4999 not in b"".join(sent)
    finally:
        close_all([baked])


def test_an_image_without_a_manifest_cannot_be_baked(cache):
    with pytest.raises(KilnError, match="no `models:` manifest"):
        verify_models((), cache)


def test_the_context_stream_is_a_plain_reproducible_tar(tmp_path):
    rendered = tmp_path / "ctx"
    (rendered / "payload").mkdir(parents=True)
    (rendered / "Dockerfile").write_text("FROM scratch\n")
    (rendered / "start.sh").write_text("#!/bin/sh\n")
    (rendered / "start.sh").chmod(0o755)
    (rendered / "payload" / "big.bin").write_bytes(os.urandom(3 << 20))
    source = tmp_path / "main.py"
    source.write_text("print('x')\n")
    entries = context_entries(rendered, {"main.py": source})
    data = b"".join(stream_tar(entries))
    assert data == b"".join(stream_tar(context_entries(rendered, {"main.py": source})))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["Dockerfile", "comfyui/main.py", "payload/big.bin", "start.sh"]
        assert members["start.sh"].mode == 0o755 and members["Dockerfile"].mode == 0o644
        assert all(m.mtime == 0 and m.uid == 0 for m in members.values())
        assert tar.extractfile("payload/big.bin").read() == (rendered / "payload" / "big.bin").read_bytes()
    assert len(data) % tarfile.BLOCKSIZE == 0


def test_a_file_that_shrinks_while_it_is_sent_fails_the_stream(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    entry = Entry("f", 10, 0o644, lambda: iter([path.read_bytes()]))
    with pytest.raises(KilnError, match="changed size"):
        b"".join(stream_tar([entry]))
