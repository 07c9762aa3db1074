"""Host-side checks `invoke run` makes before starting anything."""

import errno
import os
import socket

import pytest

from kiln.errors import KilnError
from kiln.engine.run import check_port
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
