"""An unverified ComfyUI source must be the version its stack pins: the card's 0.3.18 stand-in handed to an
image of the zimage stack is refused at the source, for `invoke build` as for a portable render."""

import pytest

from kiln.errors import KilnError
from kiln.sources.comfyui import comfyui_source
from tests.conftest import ROOT

STANDIN = ROOT / "tests" / "standin" / "comfyui"


def test_an_unverified_source_of_another_version_is_refused(project, tmp_path):
    pin = project.stack_lock("zimage").comfyui
    with pytest.raises(KilnError) as err:
        comfyui_source(pin, STANDIN, True, tmp_path, "zimage")
    assert "the ComfyUI source is version 0.3.18, stack 'zimage' pins ComfyUI 0.3.74" in err.value.line()
    assert err.value.where == "--comfyui-src"


def test_an_unverified_source_of_the_pinned_version_is_taken(project, tmp_path):
    source = comfyui_source(project.lock.comfyui, STANDIN, True, tmp_path, "card")
    assert not source.verified and "comfyui_version.py" in source.files
