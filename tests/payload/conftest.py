"""Fixtures for the in-container smoke payload (provision/container/smoke).

These tests expect a machine without a usable GPU (as CI is); torch may or
may not be importable, and the assertions follow whichever is the case.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from payload_env import fresh_expect


@pytest.fixture
def expect() -> dict:
    return fresh_expect()


@pytest.fixture
def expect_file(tmp_path: Path, expect: dict) -> Path:
    path = tmp_path / "expect.json"
    path.write_text(json.dumps(expect))
    return path
