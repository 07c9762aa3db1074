"""Host-side checks `invoke run` makes before starting anything."""

import errno
import os
import socket

import pytest

from kiln.errors import KilnError
from kiln.engine.run import RunRequest, check_port, start
from kiln.host.cache import prepare_cache
from kiln.models.plan import plan
from kiln.paths import mounted_cache


def test_a_filesystem_that_cannot_hold_the_uid_is_refused(tmp_path, monkeypatch):
    """Stand-in for a vfat/FUSE mount: chown fails there the way this patched one does."""
    if os.geteuid() != 0:
        pytest.skip("the uid probe runs only as root")
    os.chown(tmp_path, 10001, 10001)

    def refuse(*_):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "chown", refuse)
    with pytest.raises(KilnError) as err:
        mounted_cache(str(tmp_path), "--cache")
    assert "cannot hold file owners" in err.value.line() and "provision.cache" in err.value.line()
    assert list(tmp_path.iterdir()) == []


def test_world_writable_cache_is_accepted(tmp_path):
    tmp_path.chmod(0o777)
    assert mounted_cache(str(tmp_path), "--cache") == tmp_path


def test_port_in_use(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(KilnError) as err:
            check_port(sock.getsockname()[1], public=False)
    assert "is in use" in err.value.line()


# The library's own callers (not only the tasks, which check first) get the same shared cache checks.

def test_start_refuses_a_bad_cache_before_it_asks_the_engine(tmp_path):
    request = RunRequest(tag="kiln/comfyui:x", name="kiln-x", port=8188, cache=tmp_path / "missing")
    with pytest.raises(KilnError) as err:
        start(None, request)   # no engine client: the check comes first
    assert err.value.line().startswith(f"--cache: cache folder {tmp_path / 'missing'} does not exist")


def test_the_download_plan_refuses_a_cache_whose_models_is_a_file(tmp_path):
    (tmp_path / "models").write_text("x")
    with pytest.raises(KilnError) as err:
        plan((), tmp_path, "images/z-image-turbo.yaml")
    assert err.value.line().startswith(f"--to: {tmp_path / 'models'} exists and is not a folder")


def test_a_prepared_cache_the_image_user_cannot_write_is_refused(tmp_path):
    """A stand-in for provision/host/cache.sh that makes the folder and sets no owner."""
    script = tmp_path / "cache.sh"
    script.write_text('mkdir -p "$1"\n')
    with pytest.raises(KilnError) as err:
        prepare_cache(script, tmp_path / "cache")
    assert "is not writable by the image's user (uid 10001)" in err.value.line()
