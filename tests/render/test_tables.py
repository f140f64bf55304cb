"""Tables at 80, 120 and 200 columns: no line wider than the terminal, tensor names folded
only at dots (never inside a segment), the ``#`` column kept, on the examples and on a
transformers GPT-2 built from a small config."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from initaudit._cli import main
from initaudit.render.tables import Column, elide, fold_name, layout

from ..conftest import EXAMPLES

GPT2 = """\
from transformers import GPT2Config, GPT2LMHeadModel


def build_model():
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64)
    return GPT2LMHeadModel(cfg)
"""

WIDTHS = (80, 120, 200)


def run(width: int, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": str(width), "NO_COLOR": "1"})
    assert result.exit_code in (0, 1), result.output
    return result.stdout


def assert_fits(text: str, width: int, names: list[str]) -> None:
    lines = text.splitlines()
    too_wide = [ln for ln in lines if len(ln.rstrip()) > width]
    assert not too_wide, too_wide[:3]
    body = "\n".join(lines)
    for name in names:  # every segment of every name shows whole
        for seg in name.split("."):
            assert seg in body, (name, seg)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2") / "gpt2_tiny.py"
    path.write_text(GPT2)
    return path


@pytest.fixture(scope="module")
def names(gpt2):
    """The tensor names of each target, from inspect's JSON."""
    import json

    out = {}
    for target in (EXAMPLES / "highway.py", gpt2):
        data = json.loads(run(200, "inspect", str(target), "--no-rerun", "--format", "json"))
        out[target] = [t["name"] for t in data["tensors"]]
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_inspect_freeze_diff_fit(width, tmp_path, names, zero_bias_drift):
    for target, tensor_names in names.items():
        text = run(width, "inspect", str(target), "--no-rerun", "-q")
        assert_fits(text, width, tensor_names)
        numbers = [ln.split()[0] for ln in text.splitlines() if ln[:3].strip().isdigit()]
        assert numbers[:3] == ["0", "1", "2"]  # the # column is there
        text = run(width, "freeze", str(target), "--out", str(tmp_path / f"{target.stem}.json"),
                   "--force", "-q")  # fmt: skip
        assert_fits(text, width, tensor_names[:40])
    before, after = zero_bias_drift
    text = run(width, "diff", str(before), str(after))
    assert_fits(text, width, ["hid1.bias", "hid2.weight", "oupt.bias"])
    if width < 120:  # the detail moved under its row
        assert "    shape: 4 · detail: 4/4 differ" in text


def test_fold_name_breaks_only_after_dots():
    assert fold_name("stage_1.0.bn_a.running_mean", 16) == ["stage_1.0.bn_a.", "running_mean"]
    assert fold_name("short.name", 40) == ["short.name"]
    for width in range(8, 40):
        for line in fold_name("transformer.h.10.attn.c_attn.weight", width):
            assert len(line) <= width
    assert elide("embed_positions", 9) == "embe…ions"


def test_columns_leave_the_row_by_priority():
    cols = (Column("name", names=True), Column("a", drop=1), Column("b", drop=2))
    rows = [["x.y", "A" * 30, "B" * 30]]
    wide = layout(cols, rows, 120)
    narrow = layout(cols, rows, 50)
    assert len(wide.renderables) == 3  # header, rule, one row
    lines = [str(t) for t in narrow.renderables]
    assert "b: " + "B" * 30 in lines[-1] and "A" * 30 in lines[2]  # b (drop=2) left first
