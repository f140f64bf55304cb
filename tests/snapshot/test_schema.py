"""The typed snapshot schema: the writer's manifests pass it, every violation is one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from initaudit import snapshot
from initaudit._cli import main
from initaudit.freeze import freeze
from initaudit.snapshot import schema
from initaudit.target import resolve

from ..conftest import EXAMPLES, ROOT

SNAPSHOTS = sorted((ROOT / "snapshots").glob("*/*.json"))
MLP = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(result, *needles: str) -> str:
    """The single stderr line of an exit-2 result, checked for each needle."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "internal error" not in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def pair(tmp_path) -> tuple[Path, dict]:
    """A private copy of the committed mlp snapshot (``m.json``) and its parsed manifest."""
    dest = tmp_path / "m.json"
    shutil.copy(MLP, dest)
    shutil.copy(
        MLP.with_suffix(".safetensors"), tmp_path / json.loads(MLP.read_text())["values"]["file"]
    )
    return dest, json.loads(MLP.read_text())


def write(path: Path, manifest: dict) -> Path:
    path.write_text(json.dumps(manifest, allow_nan=True))
    return path


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.parent.name)
def test_committed_snapshots_match_the_schema(path):
    schema.validate_manifest(json.loads(path.read_text()))


def test_the_writers_manifest_matches_the_schema():
    """What build_manifest writes (with every optional part: events, orphan draws, aliases)."""
    for example in ("highway.py", "cnn.py", "mlp.py"):
        snap, _ = freeze(resolve(str(EXAMPLES / example), {}), seed=3)
        schema.validate_manifest(json.loads(snapshot.manifest_text(snap.manifest)))


def test_a_wrong_type_is_one_line_naming_the_file_and_the_field(pair, monkeypatch):
    path, m = pair
    m["tensors"][3]["shape"] = 5
    write(path, m)
    monkeypatch.chdir(path.parent)
    for args in (("inspect", "m.json"), ("diff", "m.json", MLP), ("diff", MLP, "m.json")):
        line = one_line(invoke(*args))
        assert line == (
            "initaudit: error: m.json: tensors[3].shape: expected a list of non-negative "
            "integers, got 5"
        ), line


def _set(doc: dict, where: str, value) -> None:
    *parents, last = where.split("/")
    for key in parents:
        doc = doc[int(key) if key.isdigit() else key]
    if value is KeyError:
        del doc[last]
    else:
        doc[int(last) if last.isdigit() else last] = value


def _deep(n: int):
    out: list = []
    for _ in range(n):
        out = [out]
    return out


@pytest.mark.parametrize(
    "where, value, message",
    [
        (
            "tensors/1/shape",
            [4, -1],
            "tensors[1].shape[1]: expected a non-negative integer, got -1",
        ),
        ("tensors/0/hash", "abc", "tensors[0].hash: expected a 'sha256:' and 64 hex digits"),
        ("tensors/0/stats/mean", float("nan"), "tensors[0].stats.mean: expected a finite number"),
        (
            "tensors/0/stats/numel",
            2**70,
            "tensors[0].stats.numel: expected a non-negative integer of at most 64 bits",
        ),
        (
            "tensors/0/name",
            "x" * 70_000,
            "tensors[0].name: string longer than 65,536 characters (70,000)",
        ),
        ("tensors/0/name", ["a"], "tensors[0].name: expected a string, got a list of 1 item(s)"),
        ("tensors/0/events/0/args", {"size": _deep(40)}, "tensors[0].events[0].args.size[0]"),
        ("tensors/0/events/1/op", KeyError, "tensors[0].events[1].op: missing (expected a string)"),
        (
            "tensors/2/init",
            [],
            "tensors[2].init: expected an object or null, got a list of 0 item(s)",
        ),
        (
            "tensors/2/stats",
            {"numel": "12"},
            'tensors[2].stats.numel: expected a non-negative integer, got "12"',
        ),
        ("tensors", {}, "tensors: expected a list of objects, got an object"),
        ("provenance", [], "provenance: expected an object, got a list of 0 item(s)"),
        (
            "provenance/libraries",
            {"timm": "x" * 70_000},
            "provenance.libraries.timm: string longer",
        ),
        ("seed", True, "seed: expected an integer, got true"),
        (
            "values/file",
            3,
            "values.file: expected a file name (no folder) beside the manifest, got 3",
        ),
        (
            "values/file",
            "../../x",
            "values.file: expected a file name (no folder) beside the manifest",
        ),
        ("values", {}, "values.file: missing (expected a file name"),
        ("orphan_draws", [{"seq": 1}], "orphan_draws[0].op: missing (expected a string)"),
        ("target/kwargs", {"[/]": "\x1b[2J"}, None),  # valid: markup and escapes are plain text
    ],
)
def test_violations(pair, where, value, message):
    path, m = pair
    _set(m, where, value)
    write(path, m)
    result = invoke("inspect", path)
    if message is None:
        assert result.exit_code in (0, 1), result.output
        return
    line = one_line(result, f"{path}: {message}")
    assert len(line) < 400, line  # a hostile value is described, not echoed


def test_unknown_keys_are_accepted_and_optional_keys_may_be_absent(pair):
    """Newer writers add fields; older ones wrote fewer: both read, diff and audit."""
    path, m = pair
    m["provenance"]["libraries"] = {"timm": "1.0.0"}
    m["future_top_level"] = [1, 2]
    for t in m["tensors"]:
        for ev in t.get("events", []):
            ev["library"] = "torch"
    write(path, m)
    assert invoke("diff", MLP, path).exit_code == 0
    required = set(schema.TensorEntry.__required_keys__)
    for t in m["tensors"]:
        for key in list(t):
            if key not in required:
                del t[key]
    for key in ("orphan_draws", "values"):
        del m[key]
    m["provenance"] = {}
    m["rng"] = {}
    del m["target"]["kwargs"]
    write(path, m)
    schema.validate_manifest(m)
    for args in (("diff", MLP, path), ("diff", path, MLP), ("inspect", path)):
        result = invoke(*args)
        assert result.exit_code in (0, 1), (args, result.output)
        assert "internal error" not in result.output


# json.loads itself refuses these before validation: snapshot.read() turns that into one line.
@pytest.mark.parametrize(
    "text", ["[" * 100_000 + "]" * 100_000, "1" + "0" * 5000], ids=["deep", "digits"]
)
def test_json_the_parser_refuses_is_one_line(pair, text):
    path, _ = pair
    path.write_text(MLP.read_text().replace('"kwargs": {}', f'"kwargs": {{"x": {text}}}'))
    one_line(invoke("inspect", path), str(path))
