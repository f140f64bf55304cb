"""The pytest plugin, through pytester (loaded by its pytest11 entry point, as users get it)."""

from __future__ import annotations

# Every run is a real pytest subprocess (runpytest_subprocess), where the plugin loads through
# its pytest11 entry point as it does for users. In-process runs do not work with torch:
# pytester drops modules first imported during a run from sys.modules, and torch cannot be
# imported twice into one interpreter (double operator registration, crashes on collection).
pytest_plugins = ["pytester"]

MODEL_TEST = """
import torch.nn as nn


def build():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
{change}
    return model


def test_init(initaudit_snapshot):
    initaudit_snapshot(build)
"""

SPEC_TEST = """
def test_spec(initaudit_snapshot):
    initaudit_snapshot("net.py:Net", seed=3)
"""

NET = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(4, 3)
"""


def test_plugin_missing_update_pass_drift(pytester):
    pytester.makepyfile(test_model=MODEL_TEST.format(change=""))
    # no committed snapshot: fails, and says how to create one
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no committed snapshot*--initaudit-update*"])
    assert not (pytester.path / "snapshots").exists()
    # --initaudit-update writes it under <rootdir>/snapshots/<model>/
    pytester.runpytest_subprocess("--initaudit-update").assert_outcomes(passed=1)
    written = list((pytester.path / "snapshots").rglob("*.json"))
    assert len(written) == 1 and written[0].parent.name == "test_model.build"
    # unchanged: passes
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    # a zeroed weight: fails with the drift report as the message
    pytester.makepyfile(test_model=MODEL_TEST.format(change="    nn.init.zeros_(model[1].weight)"))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*initial weights of build drifted from*",
            "*DRIFT: 1 of 4 tensors differ (1 recipe-drift)*",
            "*root cause 1.weight (recipe-drift)*",
            "*run pytest --initaudit-update to accept the new init*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # accepted
    pytester.runpytest_subprocess("--initaudit-update").assert_outcomes(passed=1)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_plugin_spec_target_and_ini_folder(pytester):
    pytester.makepyfile(net=NET, test_spec=SPEC_TEST)
    pytester.makeini("[pytest]\ninitaudit_snapshot_dir = golden\n")
    pytester.runpytest_subprocess("--initaudit-update").assert_outcomes(passed=1)
    (written,) = (pytester.path / "golden").rglob("*.json")
    assert written.name.endswith("-seed3.json")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    pytester.makepyfile(net=NET.replace("nn.Embedding(4, 3)", "nn.Embedding(5, 3)"))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*shape-drift*emb.weight*4×3 → 5×3*"])
