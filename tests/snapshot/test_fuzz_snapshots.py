"""A hypothesis fuzzer over snapshot manifests and values files, run against the real CLI.

Each example mutates a copy of a committed snapshot pair (a field replaced by a hostile JSON
value, deleted, duplicated, nested deep; the values file truncated, flipped, padded, removed) and
runs a command on it in-process. The promise under test: exit 0 or 1 with a verdict, or exit 2
with one line that names the file; never an internal error, a traceback or a hang.

``INITAUDIT_FUZZ_EXAMPLES`` sets the number of examples (default 200, seeded, derandomized);
``INITAUDIT_FUZZ_COUNT=1`` turns the asserts into a tally printed at the end (for a large
one-off run: ``INITAUDIT_FUZZ_EXAMPLES=3000 INITAUDIT_FUZZ_COUNT=1 pytest -s -k fuzz``).
"""

from __future__ import annotations

import collections
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from initaudit._cli import main

from ..conftest import ROOT

MLP = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"
EXAMPLES = int(os.environ.get("INITAUDIT_FUZZ_EXAMPLES", "200"))
COUNT = os.environ.get("INITAUDIT_FUZZ_COUNT") == "1"
#: Seconds one command may take before the example counts as a hang.
HANG_S = 20
TALLY: collections.Counter[str] = collections.Counter()
FAILURES: list[str] = []

BASE = json.loads(MLP.read_text())

# --------------------------------------------------------------------------- hostile values

_nasty_strings = st.sampled_from(
    [
        "",
        "[/]",
        "[link=https://example.com]x[/link]",
        "[bold red]x",
        "\x1b]0;title\x07",
        "\x1b[2J\x1b[H",
        "a\nb",
        "\r",
        "\ud800",
        "\u202e",
        ":red_heart:",
        "nan",
        "inf",
        "-inf",
        "sha256:" + "0" * 64,
        "float32",
        "cuda:0",
        "default",
        "user",
        "alloc",
        "write",
        "copy",
        "global",
        "../../etc/passwd",
        "x" * 70_000,
        "y" * 60_000,
        "é" * 300,
        "漢字" * 200,
    ]
)
_nasty_numbers = st.one_of(
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, -(2**64), 2**70, 10**400, 0.5, -0.0]),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, 5e-324]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
_scalars = st.one_of(st.none(), st.booleans(), _nasty_numbers, _nasty_strings, st.text(max_size=20))
_json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _deep(depth: int) -> Any:
    out: Any = []
    for _ in range(depth):
        out = [out]
    return out


_hostile = st.one_of(
    _json_values,
    st.integers(min_value=30, max_value=300).map(_deep),
    st.just({"[/]": "\x1b[2J"}),
)


# --------------------------------------------------------------------------- mutations


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into the document (the first tensor's events sampled, not all of them)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, (*prefix, i))
    return out


PATHS = [p for p in _paths(BASE) if p]


def _parent(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def _same_type(old: Any, seed: Any) -> Any:
    """A value of the old one's JSON type, derived from ``seed``: valid-looking, still hostile."""
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else old + 1
    if isinstance(old, float):
        return seed if isinstance(seed, float) else -old
    if isinstance(old, str):
        return seed if isinstance(seed, str) else old + "[/]\x1b[2J"
    if isinstance(old, list):
        return old[::-1] + old[:1]
    if isinstance(old, dict):
        return {**old, "[/]": seed}
    return seed


def _mutate(doc: Any, path: tuple, op: str, value: Any) -> None:
    parent = _parent(doc, path)
    key = path[-1]
    value = copy.deepcopy(value)
    if op == "same-type":
        parent[key] = _same_type(parent[key], value)
    elif op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "add-key" and isinstance(parent[key], dict):
        parent[key]["future_field"] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    elif op == "empty" and isinstance(parent[key], (list, dict, str)):
        parent[key] = type(parent[key])()
    else:
        parent[key] = value


_manifest_mutation = st.tuples(
    st.sampled_from(PATHS),
    st.sampled_from(
        ["same-type"] * 4 + ["replace", "replace", "delete", "add-key", "duplicate", "empty"]
    ),
    _hostile,
)

VALUES_OPS = ["truncate", "flip", "append", "empty", "remove", "header"] + ["none"] * 6
_values_mutation = st.tuples(
    st.sampled_from(VALUES_OPS), st.integers(0, 2**20), st.binary(max_size=8)
)


def _mutate_values(path: Path, op: str, where: int, data: bytes) -> bool:
    """Mutate the values file; True when its bytes changed (or it is gone)."""
    raw = path.read_bytes()
    n = len(raw)
    if op == "truncate":
        path.write_bytes(raw[: where % n])
    elif op == "flip":
        i = where % n
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :])
    elif op == "append":
        path.write_bytes(raw + (data or b"\0"))
    elif op == "empty":
        path.write_bytes(b"")
    elif op == "remove":
        path.unlink()
    elif op == "header":
        path.write_bytes(raw[:8] + b'{"x": ' + raw[14:])
    else:
        return False
    return True


COMMANDS = [
    ("diff", "{a}", "{b}"),
    ("diff", "{b}", "{a}"),
    ("diff", "{a}", "{b}", "--format", "json"),
    ("diff", "{a}", "{b}", "--format", "markdown"),
    ("diff", "--verify", "{a}", "{b}"),
    ("inspect", "{b}"),
    ("inspect", "{b}", "--format", "json"),
    ("check", str(ROOT / "examples" / "mlp.py"), "--against", "{b}", "-q"),
]


def _has_verdict(out: str, args: list[str]) -> bool:
    """Whether a command's stdout carries its verdict (JSON output must parse)."""
    if "json" in args:
        try:
            data = json.loads(out)
        except ValueError:
            return False
        return "verdict" in data or "exit_code" in data.get("summary", {})
    if "markdown" in args:
        return "**❌" in out or "**✅" in out
    return any(out.startswith(v) or f"\n{v}" in out for v in ("IDENTICAL", "DRIFT", "OK", "FAIL"))


class _Hang(BaseException):
    """Raised by the alarm: a command ran past HANG_S (a BaseException, so no handler eats it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


class _Result:
    """What a command left: exit code, stdout, stderr, and an exception other than SystemExit."""

    def __init__(self, exit_code: int, stdout: str, stderr: str, exception=None) -> None:
        self.exit_code, self.stdout, self.stderr, self.exception = (
            exit_code,
            stdout,
            stderr,
            exception,
        )


def _in_process(args: list[str]) -> _Result | None:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        r = CliRunner().invoke(main, args)
    except _Hang:
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    exc = r.exception if not isinstance(r.exception, SystemExit) else None
    return _Result(r.exit_code, r.stdout, r.stderr, exc)


def _subprocess(args: list[str]) -> _Result | None:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "initaudit", *args],
            capture_output=True,
            text=True,
            errors="backslashreplace",
            timeout=HANG_S * 3,
            env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        )
    except subprocess.TimeoutExpired:
        return None
    return _Result(proc.returncode, proc.stdout, proc.stderr)


def run_case(
    tmp: Path, mutations: list, values_op: tuple, command: tuple, run=_in_process
) -> tuple[str, str]:
    """Run one fuzz case; return (category, detail): verdict, clean-error, internal, hang, bad."""
    a = tmp / "a" / MLP.name
    b = tmp / "b" / MLP.name
    for p in (a, b):
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MLP.with_suffix(".safetensors"), p.with_suffix(".safetensors"))
    a.write_text(MLP.read_text())
    doc = copy.deepcopy(BASE)
    for path, op, value in mutations:
        try:
            _mutate(doc, path, op, value)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed the path
    b.write_text(json.dumps(doc, allow_nan=True))  # NaN/Infinity: json.loads accepts them
    values_changed = _mutate_values(b.with_suffix(".safetensors"), *values_op)
    doc = doc if isinstance(doc, dict) else {}
    args = [part.format(a=a, b=b) for part in command]
    result = run(args)
    if result is None:
        return "hang", f"{args}"
    out, err = result.stdout, result.stderr
    where = f"{args} -> {result.exit_code}: {err.strip()[:300] or out[:300]}"
    if "internal error" in err or "Traceback" in out + err:
        return "internal", where
    if result.exception is not None:
        return "internal", f"{where} ({type(result.exception).__name__}: {result.exception})"
    if result.exit_code == 2:
        lines = err.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("initaudit: error:"):
            return "bad", f"not one error line: {where}"
        if str(b) not in lines[0] and str(b.with_suffix(".safetensors")) not in lines[0]:
            return "bad", f"error names no file: {where}"
        return "clean-error", where
    if result.exit_code in (0, 1):
        if not _has_verdict(out, args):
            return "bad", f"no verdict: {where}"
        if "--verify" in args and values_changed and doc.get("values") == BASE["values"]:
            return "bad", f"--verify passed a modified values file: {where}"
        relied_on = values_changed and doc.get("values") == BASE["values"]
        if relied_on and values_op[0] != "flip":
            # truncated, padded, emptied, removed or a broken header: the structural check
            # every command runs on a values file it relies on must refuse it
            return "bad", f"a structurally broken values file gave a verdict: {where}"
        if relied_on:
            # a flipped byte behind an intact header: only --verify hashes the values
            return "verdict-on-corrupt-values", where
        return "verdict", where
    return "bad", f"exit code: {where}"


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    mutations=st.lists(_manifest_mutation, min_size=0, max_size=3),
    values_op=_values_mutation,
    command=st.sampled_from(COMMANDS),
)
def test_fuzzed_snapshots_give_a_verdict_or_one_line(mutations, values_op, command):
    with tempfile.TemporaryDirectory() as tmp:
        category, detail = run_case(Path(tmp), mutations, values_op, command)
    TALLY[category] += 1
    if category not in ("verdict", "clean-error", "verdict-on-corrupt-values"):
        FAILURES.append(f"{category}: {detail}")
        if not COUNT:
            pytest.fail(f"{category}: {detail}")


@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    mutations=st.lists(_manifest_mutation, min_size=1, max_size=2),
    values_op=_values_mutation,
    command=st.sampled_from(COMMANDS[:6]),
)
def test_fuzzed_snapshots_in_a_real_process(mutations, values_op, command):
    """A few examples in a real process: real stdout/stderr encoding, real exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        category, detail = run_case(Path(tmp), mutations, values_op, command, run=_subprocess)
    TALLY[f"subprocess {category}"] += 1
    assert category in ("verdict", "clean-error", "verdict-on-corrupt-values"), detail


def test_zz_fuzz_tally():
    """Print the tally of the fuzz run (with -s); in count mode, the failures too."""
    if not TALLY:
        pytest.skip("the fuzzer did not run")
    print(f"\nfuzz tally ({sum(TALLY.values())} tried): {dict(TALLY)}")
    for line in FAILURES[:50]:
        print("  " + line[:400])
