"""Targets: file and module specs, automatic picking, literal arguments, clear errors."""

from __future__ import annotations

import pytest
from torch import nn

from initaudit.errors import TargetError, UsageError
from initaudit.target import parse_args, parse_shape, resolve

from .conftest import EXAMPLES


def test_file_specs(tmp_path):
    assert resolve(str(EXAMPLES / "mlp.py")).name == "Net"
    assert resolve(str(EXAMPLES / "highway.py")).name == "build_model"
    t = resolve(
        str(EXAMPLES / "highway.py") + ":CifarResNet", {"block": None, "depth": 8, "num_classes": 2}
    )
    assert t.name == "CifarResNet" and t.slug.startswith("highway.CifarResNet-")


def test_module_spec():
    t = resolve("torch.nn:Linear", {"in_features": 3, "out_features": 2})
    assert isinstance(t.build(), nn.Linear)
    with pytest.raises(TargetError, match="needs a NAME"):
        resolve("torch.nn")
    with pytest.raises(TargetError, match="cannot import"):
        resolve("no_such_pkg_xyz:Model")


def test_several_candidates_are_listed(tmp_path):
    f = tmp_path / "two.py"
    f.write_text(
        "from torch import nn\nclass A(nn.Linear):\n    def __init__(self):\n        super().__init__(2, 2)\n"
        "class B(nn.Linear):\n    def __init__(self):\n        super().__init__(3, 3)\n"
    )
    with pytest.raises(TargetError, match="candidates: A, B"):
        resolve(str(f))
    assert resolve(f"{f}:B").name == "B"


def test_errors(tmp_path):
    with pytest.raises(TargetError, match="does not exist"):
        resolve(str(tmp_path / "missing.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\ndef build_model(:\n")
    with pytest.raises(TargetError, match=r"bad\.py:3"):
        resolve(str(bad))
    with pytest.raises(TargetError, match="no attribute 'Nope'"):
        resolve(f"{EXAMPLES / 'mlp.py'}:Nope")
    with pytest.raises(TargetError, match=r"not an nn\.Module"):
        resolve(f"{EXAMPLES / 'highway.py'}:F")
    with pytest.raises(TargetError, match="arguments do not fit"):
        resolve(str(EXAMPLES / "mlp.py") + ":Net", {"width": 3})
    boom = tmp_path / "boom.py"
    boom.write_text(
        "from torch import nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        raise ValueError('bad width')\n"
    )
    with pytest.raises(TargetError, match=r"ValueError: bad width \(at .*boom\.py:6\)"):
        resolve(str(boom)).build()


def test_parse_args():
    assert parse_args(["depth=20", "name='x'", "dims=(1, 2)", "flag=True"]) == {
        "depth": 20,
        "name": "x",
        "dims": (1, 2),
        "flag": True,
    }
    with pytest.raises(UsageError, match="not a Python literal"):
        parse_args(["name=foo bar"])
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_args(["nokey"])


def test_parse_shape():
    assert parse_shape("2,3") == (2, 3)
    assert parse_shape("1x3x32x32") == (1, 3, 32, 32)
    assert parse_shape("(4, 8)") == (4, 8)
    for bad in ("2,x", "", "-1,3", "two,three"):
        with pytest.raises(UsageError):
            parse_shape(bad)


def test_an_edited_file_is_imported_afresh(tmp_path):
    """One process resolving a file twice sees its current content (rewrite verifies edited
    candidates; a pytest session may edit a model between two checks)."""
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\ndef build_model():\n    return nn.Linear(2, 3)\n")
    assert resolve(str(path)).build().weight.shape == (3, 2)
    path.write_text("from torch import nn\n\ndef build_model():\n    return nn.Linear(4, 5)\n")
    assert resolve(str(path)).build().weight.shape == (5, 4)


def test_error_location_is_not_hidden_in_a_sibling_of_torch():
    """``…/torchvision/`` starts with ``…/torch``: it is still a frame to name."""
    import os

    import torch

    from initaudit.target import _user_origin

    torch_dir = os.path.dirname(torch.__file__)
    beside = os.path.join(torch_dir + "vision", "models", "swin_transformer.py")
    try:
        exec(compile("\n" * 41 + "raise ValueError('bad window')", beside, "exec"), {})
    except ValueError as exc:
        assert _user_origin(exc) == f" (at {beside}:42)"
    inside = os.path.join(torch_dir, "nn", "init.py")
    try:
        exec(compile("raise ValueError('x')", inside, "exec"), {})
    except ValueError as exc:
        origin = _user_origin(exc)
        assert "test_target.py:" in origin and inside not in origin  # torch's own frame skipped
