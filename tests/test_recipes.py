"""Recipes: init parameter names without importing torch, and readable call text."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from torch import nn

from initaudit import recipes

from .conftest import ROOT


@pytest.mark.parametrize("call", recipes.INIT_FUNCTIONS)
def test_parameter_names_from_source_match_the_installed_functions(call):
    expected = tuple(inspect.signature(getattr(nn.init, call)).parameters)
    assert recipes._params_from_source()[call] == expected
    assert recipes.init_params(call) == expected


def test_other_calls_have_no_parameter_list():
    assert recipes.init_params("normal") is None
    assert recipes.init_params("Tensor.uniform_") is None


def test_describe_call_hides_derived_locals_and_keeps_arguments():
    args = {"a": 5**0.5, "mode": "fan_in", "nonlinearity": "leaky_relu", "fan": 3, "bound": 0.5}
    assert recipes.describe_call("kaiming_uniform_", args) == (
        "kaiming_uniform_(a=√5, mode='fan_in', nonlinearity='leaky_relu')"
    )
    # std is a parameter of normal_, so it stays even though it is also a derived-local name
    assert recipes.describe_call("normal_", {"mean": 0.0, "std": 1.0}) == "normal_(mean=0, std=1)"


def test_diff_of_identical_snapshots_does_not_import_torch():
    snap = next((ROOT / "snapshots" / "mlp").glob("*.json"))
    code = (
        "import sys\n"
        "from initaudit._cli import main\n"
        "try:\n"
        f"    main(['diff', {str(snap)!r}, {str(snap)!r}, '--format', 'json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"
