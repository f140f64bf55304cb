"""The project gates itself: each example still builds the weights of its committed snapshot.

``initaudit check examples/<x>.py`` freezes the example in memory and diffs it against the
newest snapshot committed under ``snapshots/<x>/``. A torch upgrade, a CPU with another
capability or an edited example that changes the initial weights fails here (exit 1).
"""

from __future__ import annotations

import pytest

from initaudit._cli import main
from tests.conftest import EXAMPLES, ROOT, run_cli

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_example_matches_its_committed_snapshot(example):
    if "check" not in main.commands:
        pytest.skip("initaudit check is not implemented yet")
    assert list((ROOT / "snapshots" / example[: -len(".py")]).glob("*.json")), (
        f"no committed snapshot for examples/{example}"
    )
    proc = run_cli("check", f"examples/{example}", cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
