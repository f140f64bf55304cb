"""The project gates itself: each example still builds the weights of its committed snapshot.

``initaudit check examples/<x>.py`` freezes the example in memory and diffs it against the
newest snapshot committed under ``snapshots/<x>/``. A torch upgrade, a CPU with another
capability or an edited example that changes the initial weights fails here (exit 1).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES, ROOT, run_cli

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_example_matches_its_committed_snapshot(example):
    assert list((ROOT / "snapshots" / example[: -len(".py")]).glob("*.json")), (
        f"no committed snapshot for examples/{example}"
    )
    proc = run_cli("check", f"examples/{example}", "--format", "json", cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "identical"
    assert {t["status"] for t in report["tensors"]} == {"identical"}
    if report["before"]["torch"] == report["after"]["torch"]:
        # the same torch is no environment change (a TorchVersion once showed as one)
        assert not {"torch", "torch_git"} & set(report["environment"])
