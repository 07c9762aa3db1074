"""bench/cold_node.py reads the container's creation and start from both engines: Docker writes UTC with a Z,
Podman the local offset; the same moment must come out as the same second, or every phase after the
container's creation is off by the host's offset."""

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from cold_node import _stamp  # noqa: E402


def test_docker_and_podman_times_of_one_moment_are_one_second():
    docker = _stamp("2026-12-04T23:41:28.548965123Z")
    assert _stamp("2026-12-05T00:41:28.548965123+01:00") == docker
    assert _stamp("2026-12-04T18:41:28.548965-05:00") == docker
    assert _stamp("2026-12-04T23:41:28Z") == int(docker)


def test_a_time_without_its_zone_is_refused():
    with pytest.raises(ValueError):
        _stamp("2026-12-04T23:41:28.5")
