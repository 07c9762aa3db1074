"""kiln's output node (comfyui_nodes/kiln_output) with ComfyUI's two modules it calls (folder_paths, server)
stood in for by small fakes, and torch's conversion to 8 bits left out: what a client receives and what the
output folder holds. The whole node in the real ComfyUI, in the image: tests/slow/test_real_zimage.py."""

from __future__ import annotations

import importlib.util
import io
import math
import struct
import sys
import types

import numpy as np
import pytest
from PIL import Image

from payload_env import PAYLOAD


class FakeServer:
    """server.PromptServer.instance: records what send_sync sends, and whether the file was there by then."""

    def __init__(self, folder, client_id):
        self.folder, self.client_id, self.sent = folder, client_id, []

    def send_sync(self, event, data, sid):
        files = {p.name: p.read_bytes() for p in self.folder.iterdir()}
        self.sent.append((event, bytes(data), sid, files))


@pytest.fixture
def node(tmp_path, monkeypatch):
    def load(client_id="client-1"):
        prompt_server = FakeServer(tmp_path, client_id)
        folder_paths = types.SimpleNamespace(
            get_output_directory=lambda: str(tmp_path),
            get_save_image_path=lambda prefix, out, w, h: (out, prefix, 7, "", prefix))
        server = types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=prompt_server))
        monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
        monkeypatch.setitem(sys.modules, "server", server)
        spec = importlib.util.spec_from_file_location("kiln_output",
                                                      PAYLOAD / "comfyui_nodes" / "kiln_output" / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(module, "to_uint8", lambda images: images)   # torch's part: the arrays are uint8 already
        return module, prompt_server
    return load


def _pictures(count=1, side=32):
    rng = np.random.default_rng(20261204)
    return rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt, type_id, extension, pil", [("png", 2, "png", "PNG"), ("jpeg", 1, "jpg", "JPEG"),
                                                          ("webp", 3, "webp", "WEBP")])
def test_the_client_gets_the_file_bytes_after_the_file_is_written(node, tmp_path, fmt, type_id, extension, pil):
    module, server = node()
    ui = module.KilnImageOut().send(_pictures(), fmt, 90, 1, "served")["ui"]
    [(event, frame, sid, files_then)] = server.sent
    name = f"served_{module.RUN}_00007_.{extension}"
    written = (tmp_path / name).read_bytes()
    assert (event, sid) == (1, "client-1") and struct.unpack(">I", frame[:4]) == (type_id,)
    assert frame[4:] == written and files_then[name] == written   # whole before sending
    assert Image.open(io.BytesIO(written)).format == pil and Image.open(io.BytesIO(written)).size == (32, 32)
    assert ui["images"] == [{"filename": name, "subfolder": "", "type": "output",
                             "bytes": len(written)}]
    assert ui["kiln_output"][0]["format"] == fmt


def test_png_is_lossless_and_its_level_changes_only_the_size(node):
    module, _ = node()
    picture = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, :, None], (64, 64, 3)).copy()   # a gradient packs
    stored, packed = module.encode(picture, "png", 95, 0), module.encode(picture, "png", 95, 9)
    assert len(stored) > len(packed)
    for data in (stored, packed):
        assert (np.asarray(Image.open(io.BytesIO(data))) == picture).all()


def test_without_a_client_the_file_is_still_written_and_nothing_is_sent(node, tmp_path):
    module, server = node(client_id=None)
    module.KilnImageOut().send(_pictures(2), "png", 95, 1, "batch")
    assert server.sent == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        f"batch_{module.RUN}_00007_.png", f"batch_{module.RUN}_00008_.png"]


def test_a_batch_sends_one_frame_per_picture_in_order(node):
    module, server = node()
    pictures = _pictures(2)
    module.KilnImageOut().send(pictures, "png", 95, 0, "b")
    decoded = [np.asarray(Image.open(io.BytesIO(frame[4:]))) for _, frame, _, _ in server.sent]
    assert len(decoded) == 2 and all((d == p).all() for d, p in zip(decoded, pictures))


def test_a_restarted_server_never_reuses_a_file_name(node, tmp_path):
    """A restart empties the output folder (a tmpfs) and ComfyUI counts from there again (the fake counts from
    7 each time): a /view name a client got before the restart must not name a new prompt's image after it."""
    before_restart, _ = node()
    before_restart.KilnImageOut().send(_pictures(), "png", 95, 0, "served")
    old = {p.name for p in tmp_path.iterdir()}
    for path in tmp_path.iterdir():
        path.unlink()
    after_restart, _ = node()
    after_restart.KilnImageOut().send(_pictures(), "png", 95, 0, "served")
    new = {p.name for p in tmp_path.iterdir()}
    assert len(old) == len(new) == 1 and not old & new, (old, new)


def test_the_node_is_never_served_from_comfyuis_cache(node):
    """ComfyUI reruns a node whose IS_CHANGED differs from last time; NaN differs even from itself."""
    module, _ = node()
    assert math.isnan(module.KilnImageOut.IS_CHANGED(format="png", quality=95, png_level=0, filename_prefix="x"))
