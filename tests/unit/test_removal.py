"""How every cleanup path reads the engine's answers to a removal, with the exceptions the Docker SDK itself
raises (made from real HTTP responses the way the SDK makes them): gone, being removed, still in use."""

from __future__ import annotations

import errno
import json
import os
from types import SimpleNamespace

import docker
import pytest
import requests
from docker.errors import create_api_error_from_http_exception

from kiln.engine.build import remove_build_leftovers
from kiln.engine.client import remove_container, remove_image
from kiln.errors import KilnError
from kiln.removal import Removal, answer, remove_tree

IN_PROGRESS = "removal of container 4f1c2a is already in progress"
IMAGE_IN_USE = "conflict: unable to delete 0a1b2c3d4e5f (cannot be forced) - image is being used by running container 9e8d"


def engine_error(status: int, message: str) -> docker.errors.APIError:
    """The exception the SDK raises for an engine answer with this status and message."""
    response = requests.Response()
    response.status_code, response.reason = status, requests.status_codes._codes[status][0]
    response.url = "http+docker://localhost/v1.41/containers/4f1c2a?force=True"
    response._content = json.dumps({"message": message}).encode()
    try:
        create_api_error_from_http_exception(requests.exceptions.HTTPError(response=response))
    except docker.errors.APIError as exc:
        return exc
    raise AssertionError("the SDK raised nothing")


@pytest.mark.parametrize("exc, meaning", [
    (engine_error(404, "No such container: 4f1c2a"), Removal.GONE),
    (engine_error(404, "No such image: kiln/kiln-test:x"), Removal.GONE),
    (engine_error(404, "network kiln-test_default not found"), Removal.GONE),
    (engine_error(409, IN_PROGRESS), Removal.BEING_REMOVED),
    (engine_error(409, IMAGE_IN_USE), Removal.IN_USE),
    (engine_error(500, "driver \"overlay2\" failed to remove root filesystem: device or resource busy"), None),
    (requests.exceptions.ConnectionError("Connection aborted"), None),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), Removal.GONE),
    (OSError(errno.EBUSY, "Device or resource busy"), Removal.IN_USE),
    (PermissionError(errno.EACCES, "Permission denied"), None),
], ids=["no-such-container", "no-such-image", "network-404", "in-progress", "image-in-use", "engine-500", "connection", "no-file",
        "busy", "permission"])
def test_each_answer_means_what_it_says(exc, meaning):
    assert answer(exc) is meaning


def test_the_sdk_types_are_the_ones_the_engine_gives():
    assert type(engine_error(404, "No such container: 4f1c2a")) is docker.errors.NotFound
    assert type(engine_error(404, "No such image: x")) is docker.errors.ImageNotFound
    assert type(engine_error(409, IN_PROGRESS)) is docker.errors.APIError


class Container:
    """A container whose removal gets the given answers in turn (None: removed)."""

    def __init__(self, *answers, cid="c" * 64, cmd=("/bin/sh", "-c", "pip install"), tags=()):
        self.answers, self.calls = list(answers), 0
        self.id, self.name = cid, "busy_build"
        self.attrs = {"Config": {"Cmd": list(cmd)}}
        self.image = SimpleNamespace(tags=list(tags))

    def remove(self, force=False):
        assert force
        self.calls += 1
        reply = self.answers.pop(0) if self.answers else engine_error(404, f"No such container: {self.id}")
        if reply is not None:
            raise reply


def test_a_removal_already_in_progress_counts_as_removed_once_it_is_gone():
    container = Container(engine_error(409, IN_PROGRESS), engine_error(409, IN_PROGRESS))
    assert remove_container(container, wait_s=10) is Removal.BEING_REMOVED
    assert container.calls == 3  # asked again until the engine said it is gone


def test_a_removal_that_stays_in_progress_is_not_waited_on_forever():
    container = Container(*[engine_error(409, IN_PROGRESS)] * 1000)
    assert remove_container(container, wait_s=0.5) is Removal.BEING_REMOVED
    assert container.calls < 1000


def test_gone_already_is_not_an_error():
    assert remove_container(Container(engine_error(404, "No such container: 4f1c2a"))) is Removal.GONE
    assert remove_container(Container(None)) is Removal.REMOVED


def test_a_real_refusal_is_one_error_naming_the_container_and_the_fix():
    with pytest.raises(KilnError) as err:
        remove_container(Container(engine_error(500, "driver failed to remove root filesystem")))
    line = err.value.line()
    assert line.startswith("engine: cannot remove container busy_build (driver failed") and "docker rm -f busy_build" in line


def test_an_image_still_in_use_says_so():
    client = SimpleNamespace(images=SimpleNamespace(remove=lambda ref, **kw: (_ for _ in ()).throw(
        engine_error(409, IMAGE_IN_USE))))
    with pytest.raises(KilnError) as err:
        remove_image(client, "kiln/kiln-test:x", force=True)
    assert "cannot remove image kiln/kiln-test:x (still in use: conflict" in err.value.line()
    assert "stop the containers using it" in err.value.line()


def test_an_image_gone_already_is_not_an_error():
    client = SimpleNamespace(images=SimpleNamespace(remove=lambda ref, **kw: (_ for _ in ()).throw(
        engine_error(404, f"No such image: {ref}"))))
    assert remove_image(client, "kiln/kiln-test:x", noprune=True) is Removal.GONE


def test_ctrl_c_cleanup_counts_a_container_the_engine_is_already_removing():
    """The reported race: the engine removes the cancelled build's container while kiln asks for the same."""
    racing = Container(engine_error(409, IN_PROGRESS), cid="a" * 64)
    vanished = Container(engine_error(404, "No such container: b"), cid="b" * 64)
    theirs = Container(None, cid="d" * 64, tags=["debian:bookworm"])
    client = SimpleNamespace(containers=SimpleNamespace(list=lambda **kw: [racing, vanished, theirs]))
    assert remove_build_leftovers(client, before=set()) == 1
    assert theirs.calls == 0


def test_a_missing_folder_is_gone_and_a_present_one_removed(tmp_path):
    (tmp_path / "made" / "deep").mkdir(parents=True)
    assert remove_tree(tmp_path / "made") is Removal.REMOVED and not (tmp_path / "made").exists()
    assert remove_tree(tmp_path / "made") is Removal.GONE


def test_a_folder_that_cannot_be_removed_is_named(tmp_path, monkeypatch):
    (tmp_path / "made").mkdir()
    (tmp_path / "made" / "held").write_text("x")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(KilnError) as err:
        remove_tree(tmp_path / "made")
    assert err.value.line() == (f"{tmp_path / 'made'}: temporary folder could not be removed ([Errno 13] Permission "
                                f"denied); remove it with `rm -rf {tmp_path / 'made'}`")
