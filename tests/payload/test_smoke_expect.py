"""EXPECT.json loading and validation."""

from __future__ import annotations

import json

import pytest

from payload_env import H200_EXPECT, fresh_expect
from smoke.expect import ExpectError, load_expect, validate_expect


def test_loads_valid_file(expect_file):
    data = load_expect(str(expect_file))
    assert data["profile"]["name"] == "h200"


def test_shipped_h200_expect_is_valid():
    data = load_expect(str(H200_EXPECT))
    assert data["profile"]["names"] == ["NVIDIA H200"] and data["profile"]["pci_device_id"] == 0x233510DE
    assert data["profile"]["measured_copy_tbs"] > 4 and data["profile"]["measured_matmul_tflops"] > 600


def test_xformers_pin_may_be_none_but_no_other_pin():
    data = fresh_expect()
    data["pins"]["xformers"] = "none"
    validate_expect(data)
    data["pins"]["torch"] = "none"
    with pytest.raises(ExpectError, match="pins.torch 'none' cannot be parsed"):
        validate_expect(data)


def test_measured_fields_are_optional():
    data = fresh_expect()
    del data["profile"]["measured_copy_tbs"]
    del data["profile"]["measured_matmul_tflops"]
    validate_expect(data)


def test_missing_file(tmp_path):
    with pytest.raises(ExpectError, match="not found"):
        load_expect(str(tmp_path / "nope.json"))


def test_not_json(tmp_path):
    path = tmp_path / "e.json"
    path.write_text("{pins: ")
    with pytest.raises(ExpectError, match="not JSON"):
        load_expect(str(path))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("profile"), "'profile' must be an object"),
    (lambda d: d["profile"].pop("vram_gb"), "profile.vram_gb is missing"),
    (lambda d: d["profile"].__setitem__("vram_gb", True), "profile.vram_gb has the wrong type"),
    (lambda d: d["profile"].__setitem__("pcie_width", "16"), "profile.pcie_width has the wrong type"),
    (lambda d: d["pins"].pop("torch"), "pins.torch"),
    (lambda d: d.__setitem__("torch_sass", []), "torch_sass"),
    (lambda d: d.__setitem__("torch_sass", ["sm_x"]), "torch_sass entry"),
    (lambda d: d["profile"].__setitem__("compute_capability", "nine"), "compute_capability"),
    (lambda d: d.__setitem__("driver_floor", "new"), "driver_floor"),
    (lambda d: d["profile"].__setitem__("measured_copy_tbs", "fast"), "measured_copy_tbs"),
])
def test_invalid_documents(mutate, message):
    data = fresh_expect()
    mutate(data)
    with pytest.raises(ExpectError, match="bad expect file") as info:
        validate_expect(data)
    assert message in str(info.value)


def test_top_level_must_be_object(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ExpectError, match="top level"):
        load_expect(str(path))
