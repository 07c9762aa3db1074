"""Where publish finds registry credentials, in Docker's order: the KILN_REGISTRY_* variables, a credential
helper for the host, the credential store, then an `auths` entry. The helper here is a stand-in script
speaking the docker-credential-helpers protocol (`get`, the server on stdin, JSON out), since the real
ones (ecr-login, gcloud, pass) need their clouds or a keyring."""

import base64
import json
import os
import stat

import pytest

from kiln.errors import KilnError
from kiln.publish.credentials import find_credentials

HELPER = """#!/bin/sh
[ "$1" = get ] || exit 1
read server
echo "$server" >> "{log}"
case "$server" in
  {host}) printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$server" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_REGISTRY_USER", raising=False)
    monkeypatch.delenv("KILN_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    (tmp_path / "docker").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def _helper(env, name, host, user, secret):
    script = env / "bin" / f"docker-credential-{name}"
    script.write_text(HELPER.format(log=env / f"{name}.log", host=host, user=user, secret=secret))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return env / f"{name}.log"


def _config(env, data):
    (env / "docker" / "config.json").write_text(json.dumps(data))


def _auth(user, password):
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_variables_come_first(env, monkeypatch):
    _config(env, {"auths": {"reg.example": _auth("from-config", "x")}})
    monkeypatch.setenv("KILN_REGISTRY_USER", "from-env")
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", "y")
    assert find_credentials("reg.example").username == "from-env"


def test_a_user_without_a_password_in_the_variables_is_not_used(env, monkeypatch):
    _config(env, {"auths": {"reg.example": _auth("from-config", "x")}})
    monkeypatch.setenv("KILN_REGISTRY_USER", "from-env")
    assert find_credentials("reg.example").username == "from-config"


def test_a_helper_for_the_host_before_the_store_and_auths(env):
    log = _helper(env, "teamvault", "reg.example", "helper-user", "helper-secret")
    _helper(env, "store", "reg.example", "store-user", "store-secret")
    _config(env, {"credHelpers": {"reg.example": "teamvault"}, "credsStore": "store",
                  "auths": {"reg.example": _auth("auths-user", "x")}})
    found = find_credentials("reg.example")
    assert (found.username, found.password) == ("helper-user", "helper-secret")
    assert log.read_text().split() == ["reg.example"]
    assert "helper-secret" not in repr(found)


def test_the_store_then_auths_when_the_helper_has_nothing(env):
    _helper(env, "store", "other.example", "store-user", "s")
    _config(env, {"credsStore": "store", "auths": {"https://reg.example": _auth("auths-user", "pw:with:colons")}})
    found = find_credentials("reg.example")
    assert (found.username, found.password) == ("auths-user", "pw:with:colons")


def test_docker_hub_is_asked_for_by_its_index_url(env):
    log = _helper(env, "store", "https://index.docker.io/v1/", "hub-user", "hub-token")
    _config(env, {"credsStore": "store"})
    assert find_credentials("docker.io").username == "hub-user"
    assert log.read_text().split() == ["https://index.docker.io/v1/"]


def test_nothing_found_is_none_and_a_missing_helper_is_not_an_error(env):
    _config(env, {"credsStore": "not-installed"})
    assert find_credentials("reg.example") is None


def test_a_broken_config_is_one_line(env):
    (env / "docker" / "config.json").write_text("{not json")
    with pytest.raises(KilnError, match="cannot read the Docker config"):
        find_credentials("reg.example")
