"""Who decides that a missing GPU fails `invoke smoke`: given GPUs it does unless --allow-no-gpu;
without a GPU runtime the GPU checks skip unless --require-gpu."""

import pytest

from kiln.engine.smoke import payload_args


@pytest.mark.parametrize("gpus_given, require, allow, args", [
    (True, False, False, ["--require-gpu"]),    # default on a GPU engine: no GPU seen is a failure
    (True, False, True, []),                    # opted out, and the report says so
    (True, True, True, ["--require-gpu"]),      # an explicit --require-gpu wins
    (False, False, False, []),                  # no runtime: skips, said on the first line
    (False, True, False, ["--require-gpu"]),
])
def test_payload_args(gpus_given, require, allow, args):
    assert payload_args(gpus_given, require, allow) == args
