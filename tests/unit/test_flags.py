import pytest

from kiln.data.tables import flag_table
from kiln.gate.argv import parse


@pytest.fixture
def table():
    return flag_table("0.3.18")


def problems(table, *tokens):
    return [(p.flag, p.message, p.fix) for p in parse(list(tokens), table).problems]


def test_valid_line_has_no_problems(table):
    assert problems(table, "--listen", "0.0.0.0", "--port", "8188", "--preview-method", "none", "--highvram",
                    "--reserve-vram", "0.5", "--fast", "--verbose") == []


def test_listen_with_port_names_the_correct_form(table):
    [(flag, message, fix)] = problems(table, "--listen", "0.0.0.0:8188")
    assert flag == "--listen" and "0.0.0.0:8188" in message
    assert fix == "write --listen 0.0.0.0 --port 8188"


def test_ipv6_and_address_lists_are_fine(table):
    assert problems(table, "--listen", "0.0.0.0,::") == []
    assert problems(table, "--listen") == []


@pytest.mark.parametrize("flag, hint", [("--enable-xformers", "--disable-xformers"),
                                        ("--use-torch-compile", "TorchCompileModel"),
                                        ("--fast-decode", "--fp16-vae")])
def test_flags_that_never_existed(table, flag, hint):
    [(name, message, fix)] = problems(table, flag)
    assert name == flag and "any version" in message and hint in fix


def test_fast_takes_no_feature_names_at_0_3_18(table):
    [(flag, message, fix)] = problems(table, "--fast", "fp16_accumulation")
    assert flag == "--fast" and "takes no value" in message and "later ComfyUI" in fix


def test_typo_gets_a_suggestion(table):
    [(_, _, fix)] = problems(table, "--highvrma")
    assert fix.startswith("did you mean --highvram (") and "VRAM" in fix


def test_values_are_typed(table):
    assert problems(table, "--port", "eighty")[0][1] == "--port needs an integer, got 'eighty'"
    assert "not one of" in problems(table, "--preview-method", "fast")[0][1]
    assert problems(table, "--port")[0][1] == "--port needs a value"


def test_equals_form_is_read(table):
    assert problems(table, "--port=8188", "--preview-method=none") == []


def test_exclusive_groups_come_from_the_table(table):
    assert "--cpu" in table.group_of("--highvram")
    assert table.group_of("--force-fp16") == ("--force-fp32", "--force-fp16")


def test_unknown_version_has_no_table():
    assert flag_table("9.9.9") is None


def test_fast_takes_feature_names_from_0_3_74():
    table = flag_table("0.3.74")
    assert problems(table, "--fast") == []
    assert problems(table, "--fast", "fp16_accumulation", "autotune", "--highvram") == []
    [(flag, message, _)] = problems(table, "--fast", "fp16_accumulation", "turbo")
    assert flag == "--fast" and "'turbo' is not one of fp16_accumulation" in message


def test_flags_added_after_0_3_18_are_refused_there_and_known_at_0_3_74():
    added = ["--use-flash-attention", "--disable-api-nodes", "--cache-none", "--async-offload", "--bf16-text-enc"]
    assert all(problems(flag_table("0.3.74"), flag) == [] for flag in added)
    assert [p[0] for p in problems(flag_table("0.3.18"), *added)] == added


def test_new_exclusive_groups_at_0_3_74():
    table = flag_table("0.3.74")
    assert "--use-flash-attention" in table.group_of("--use-sage-attention")
    assert "--cache-ram" in table.group_of("--cache-lru")
