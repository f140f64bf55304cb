"""Strings from a snapshot or a model reach the terminal as plain, bounded text: no markup, no
escape sequences, no quadratic rendering."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from initaudit import audit, snapshot
from initaudit._cli import main
from initaudit.diff import diff_snapshots
from initaudit.render import audit as render_audit
from initaudit.render import console as render
from initaudit.render.diff import diff_markdown, diff_plain

from ..conftest import ROOT, run_cli

MLP = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"
EVIL = (
    "w[/]x[link=https://example.com]y[/link][bold red]z\x1b]0;pwned\x07\x1b[2J:red_heart:\n\u202e"
)
#: What the evil name shows as: markup literally, control characters as visible escapes.
SHOWN = "w[/]x[link=https://example.com]y[/link][bold red]z\\x1b]0;pwned\\x07\\x1b[2J:red_heart:"
RAW = ("\x1b]", "\x07", "\x1b[2J", "\u202e", "❤")


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def evil_copy(tmp_path: Path, name: str = EVIL, index: int = 0, cpu: bool = True) -> Path:
    """The committed mlp snapshot with tensor ``index`` renamed (values left out: digests only)."""
    m = json.loads(MLP.read_text())
    m["tensors"][index]["name"] = name
    m["tensors"][index]["init"]["text"] = name
    if cpu:
        m["provenance"]["cpu"] = name
    m["values"] = None
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(m))
    return path


def test_safe_shows_controls_and_cuts_long_text():
    assert render.safe("a\x1b[2Jb\tc") == "a\\x1b[2Jb\\x09c"
    assert render.safe("\ud800\u202e") == "\\ud800\\u202e"
    assert render.safe("[/]") == "[/]" and render.markup("[/]") == "\\[/]"
    cut = render.safe("x" * 10_000, 50)
    assert cut == "x" * 50 + "…(+9,950 chars)"


@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "{p}"),
        ("diff", MLP, "{p}"),
        ("diff", "{p}", MLP),
        ("diff", "{p}", MLP, "--format", "markdown"),
    ],
    ids=["inspect", "diff", "diff-reverse", "markdown"],
)
def test_markup_and_escape_sequences_in_a_tensor_name_print_literally(tmp_path, args):
    path = evil_copy(tmp_path)
    result = invoke(*[str(a).format(p=path) for a in args])
    assert result.exit_code in (0, 1), result.output
    out = result.stdout
    assert "internal error" not in result.output
    for raw in RAW:
        assert raw not in out, (raw, out)
    assert SHOWN in out.replace("\n", "") or SHOWN[:30] in out, out


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_a_folder_of_hostile_snapshots_prints_literally(tmp_path, fmt):
    """``diff DIR`` (the matrix renderer): names, versions and paths from snapshots."""
    for version in ("2.13.0", "2.14.0[/]\x1b[2J"):
        m = json.loads(evil_copy(tmp_path).read_text())
        m["provenance"]["torch"] = version
        m["tensors"][1]["hash"] = "sha256:" + ("1" if "2.14" in version else "0") * 64
        (tmp_path / "dir").mkdir(exist_ok=True)
        (tmp_path / "dir" / f"torch-{version[:6]}-seed0.json").write_text(json.dumps(m))
    result = invoke("diff", tmp_path / "dir", "--format", fmt)
    assert result.exit_code in (0, 1), result.output
    for raw in RAW:
        assert raw not in result.stdout, (raw, result.stdout)
    assert "w[/]x[link=https://example" in result.stdout
    assert "2.14.0[/]\\x1b[2J" in result.stdout


def test_escape_sequences_never_reach_a_real_terminal(tmp_path):
    """A real process with colour forced: rich's own styling only, never the snapshot's bytes."""
    path = evil_copy(tmp_path)
    for args in (("inspect", path), ("diff", MLP, path)):
        proc = run_cli(*map(str, args), env={"FORCE_COLOR": "1", "NO_COLOR": "", "TERM": "xterm"})
        assert proc.returncode in (0, 1), proc.stderr
        for raw in RAW:
            assert raw not in proc.stdout, (raw, proc.stdout)
        assert "[/]x[link=https://example.com]" in proc.stdout


def test_a_model_whose_module_names_hold_markup_freezes_and_prints_them_literally(tmp_path):
    model = tmp_path / "evil_model.py"
    model.write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        self.add_module({'[/]x[link=y]' + chr(27) + ']0;t' + chr(7)!r}, nn.Linear(2, 2))\n"
    )
    result = invoke("freeze", model, "--out", tmp_path / "out.json", "-q")
    assert result.exit_code == 0, result.output
    assert "[/]x[link=y]\\x1b]0;t\\x07.weight" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_an_error_message_naming_a_hostile_path_is_one_safe_line(tmp_path):
    result = invoke("diff", MLP, tmp_path / "x[/]\x1b[2J\n.json")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0], result.stderr
    assert "\x1b" not in result.stderr and "x[/]\\x1b[2J\\x0a.json" in lines[0]


# --------------------------------------------------------------------------- bounded cost


def test_an_8_mib_name_is_refused_by_the_reader_in_one_line(tmp_path):
    path = evil_copy(tmp_path, "n" * (8 << 20), cpu=False)
    result = invoke("inspect", path)
    assert result.exit_code == 2 and len(result.stderr) < 400, result.stderr[:400]
    assert "tensors[0].name: string longer than 65,536 characters (8,388,608)" in result.stderr


def test_an_8_mib_name_renders_in_bounded_output():
    """Past the reader (an in-memory manifest): the renderers cut the string, linear in time."""
    m = json.loads(MLP.read_text())
    long = "[/]" + "n" * (8 << 20)
    m["tensors"][0]["name"] = long
    m["tensors"][0]["init"]["text"] = long
    m["values"] = None
    snap = snapshot.Snapshot(manifest=m)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # render.console() follows sys.stdout
        render_audit.audit_text(audit.audit(snap))
    assert len(buf.getvalue()) < 20_000, len(buf.getvalue())
    other = snapshot.read(MLP)
    report = diff_snapshots(other, snap)
    assert len(diff_plain(report)) < 20_000
    assert len(diff_markdown(report)) < 20_000


def test_a_long_name_within_the_bounds_prints_cut(tmp_path):
    path = evil_copy(tmp_path, "n" * 60_000)
    for args in (("inspect", path), ("diff", MLP, path)):
        result = invoke(*args)
        assert result.exit_code in (0, 1), result.output[:400]
        assert len(result.stdout) < 20_000 and "…(+" in result.stdout
    shutil.rmtree(tmp_path, ignore_errors=True)
