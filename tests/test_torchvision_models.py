"""Real torchvision models (``weights=None``): ConvNeXt, Swin, MaxViT, SSDlite.

torchvision's wheel for torch 2.13.0 is a CUDA build that fails to import beside the CPU torch
(``operator torchvision::nms does not exist``), so these run in an isolated environment with
``torch==2.14.1 torchvision==0.29.1`` (a matching pair; the CUDA build runs on the CPU, about
5.5 GB), built once in the session's environment cache beside the 2.13.0 one and reused. They
are slow tests (``--run-slow``, ``INITAUDIT_SLOW=1`` or CI). The fast suite covers the same
patterns with models in the test tree (``tests/models/modern_vision.py``) and transformers'
Swin, Swin-v2 and Whisper from small configs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from initaudit.envs import environments as E
from tests.envs.test_environments import session_env_dir

TORCH, TORCHVISION = "2.14.1", "0.29.1"


@pytest.fixture(scope="module")
def tv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = E.ensure(TORCH, session_env_dir(tmp_path_factory), extra=(f"torchvision=={TORCHVISION}",))
    return env.python


def _initaudit(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = E.child_environ()
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [str(python), "-m", "initaudit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.mark.slow
@pytest.mark.parametrize("model", ["convnext_tiny", "swin_v2_t"])
def test_per_channel_constants_are_not_suspicious(tv_python, tmp_path, model):
    """ConvNeXt's layer_scale (C,1,1) = 1e-6 and Swin-v2's logit_scale (heads,1,1)."""
    proc = _initaudit(
        tv_python, tmp_path, "inspect", f"torchvision.models:{model}", "--no-rerun",
        "--format", "json", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    data = json.loads(proc.stdout)
    assert not [f for f in data["findings"] if f["severity"] == "error"]
    constants = [t for t in data["tensors"] if t["name"].endswith(("layer_scale", "logit_scale"))]
    assert constants and all(t["stats"]["min"] == t["stats"]["max"] for t in constants)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "args"),
    [
        ("torchvision.models:swin_t", ()),  # relative_position_index: meshgrid, stack, sum
        ("torchvision.models:maxvit_t", ()),
        # a sliced Sequential keeps its keys; its build runs an eval forward on zeros
        ("torchvision.models.detection:ssdlite320_mobilenet_v3_large", ("weights_backbone=None",)),
    ],
)
def test_explicit_reproduces_real_models(tv_python, tmp_path, spec, args):
    out = tmp_path / "init.py"
    extra = [x for a in args for x in ("--arg", a)]
    proc = _initaudit(tv_python, tmp_path, "explicit", spec, *extra, "--out", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "bit for bit" in proc.stdout and out.exists()


@pytest.mark.slow
def test_error_location_names_the_torchvision_frame(tv_python, tmp_path):
    proc = _initaudit(
        tv_python, tmp_path, "inspect", "torchvision.models:swin_t", "--arg", "window_size=[0, 0]",
        "--no-rerun",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "torchvision/models/swin_transformer.py:" in proc.stderr, proc.stderr
