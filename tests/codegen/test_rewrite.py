"""``initaudit rewrite``: the class's own ``__init__`` becomes explicit, verified and idempotent."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from initaudit import codegen
from initaudit.codegen import rewrite
from initaudit.errors import AuditFailure

from ..conftest import ROOT, run_cli

SEED_003 = ROOT / "examples" / "mlp.py"


def _build(path, cls, module_name):
    sys.path.insert(0, str(path.parent))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location(module_name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return getattr(mod, cls)
    finally:
        sys.path.remove(str(path.parent))


def _state_after(cls, seed=0):
    torch.manual_seed(seed)
    model = cls()
    return {k: v.clone() for k, v in model.state_dict().items()}, torch.rand(3)


def test_rewrite_mlp_is_bitwise_default_independent_and_idempotent(tmp_path):
    path = tmp_path / "net.py"
    shutil.copy(SEED_003, path)
    before_cls = _build(path, "Net", "net_before")
    result = rewrite.rewrite(f"{path}:Net")
    assert result.written and result.changed
    text = path.read_text()
    # comments and formatting outside the edit are preserved
    assert "self.hid1 = T.nn.Linear(3, 4)  # 3-(4-5)-2" in text
    assert text.startswith('"""The 3-(4-5)-2 tanh network')
    assert "nn.init.kaiming_uniform_(" in text and "self.hid1.weight" in text
    after_cls = _build(path, "Net", "net_after")
    for seed in (0, 3):
        (a, ra), (b, rb) = _state_after(before_cls, seed), _state_after(after_cls, seed)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert torch.equal(ra, rb)  # RNG stream after construction is the same
    ref, _ = _state_after(before_cls, 0)
    with codegen.defaults_disabled():
        b, _ = _state_after(after_cls, 0)
        c, _ = _state_after(before_cls, 0)
    assert all(torch.equal(ref[k], b[k]) for k in ref)
    assert torch.isnan(c["hid1.weight"]).all()  # the check above can fail
    second = rewrite.rewrite(f"{path}:Net")
    assert not second.changed and path.read_text() == text


def test_diff_writes_nothing(tmp_path):
    path = tmp_path / "net.py"
    shutil.copy(SEED_003, path)
    proc = run_cli("rewrite", f"{path}:Net", "--diff", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("--- a/") and "+        torch.set_rng_state(" in proc.stdout
    assert path.read_text() == SEED_003.read_text()


CORPUS = ROOT / "tests" / "models" / "codegen_corpus.py"


@pytest.mark.parametrize(
    ("source", "cls"),
    [
        (CORPUS, "Recurrent"),  # LSTM and GRU
        (CORPUS, "PaddedEmbedding"),  # Embedding(padding_idx=…)
        (CORPUS, "Attention"),  # MultiheadAttention
        (CORPUS, "Encoder"),  # TransformerEncoder's deep copies
        (CORPUS, "Normed"),  # weight_norm and spectral_norm parametrizations
        (CORPUS, "Tied"),
        (CORPUS, "RawParams"),  # nn.Parameter(torch.randn(...)), a thrown-away draw
        (CORPUS, "Applied"),  # trunc_normal_ and orthogonal_ via model.apply
        (ROOT / "examples" / "cnn.py", "CNN"),  # seed 002's CNN, its defaults
    ],
)
def test_rewrite_corpus_classes(tmp_path, source, cls):
    """Each rewritten class builds bitwise what the original built, leaves the RNG where the
    original left it, and still does with torch's defaults replaced by NaN; a second rewrite
    changes nothing."""
    path = tmp_path / "model.py"
    shutil.copy(source, path)
    before_cls = _build(path, cls, f"before_{cls}")
    assert rewrite.rewrite(f"{path}:{cls}").written
    after_cls = _build(path, cls, f"after_{cls}")
    ref, ref_rng = _state_after(before_cls, 0)
    got, got_rng = _state_after(after_cls, 0)
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k].view(-1).view(torch.uint8), got[k].view(-1).view(torch.uint8))
               for k in ref if ref[k].numel())  # fmt: skip
    assert torch.equal(ref_rng, got_rng)
    with codegen.defaults_disabled():
        nan_free, _ = _state_after(after_cls, 0)
    assert all(torch.equal(ref[k].view(-1).view(torch.uint8),
                           nan_free[k].view(-1).view(torch.uint8))
               for k in ref if ref[k].numel())  # fmt: skip
    assert not rewrite.rewrite(f"{path}:{cls}").changed


def test_unexplainable_class_leaves_file_alone(tmp_path):
    path = tmp_path / "corpus.py"
    shutil.copy(ROOT / "tests" / "models" / "codegen_corpus.py", path)
    original = path.read_text()
    with pytest.raises(AuditFailure, match=r"private torch\.Generator"):
        rewrite.rewrite(f"{path}:PrivateGenerator")
    assert path.read_text() == original
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []



def _net(lines: str) -> str:
    return (
        "\n\nclass Net(nn.Module):\n    def __init__(self) -> None:\n"
        "        super().__init__()\n" + "".join(f"        {ln}\n" for ln in lines.split(";"))
    )


@pytest.mark.parametrize(
    ("imports", "body", "expected"),
    [
        # the case: ``import torch.nn as nn`` already binds nn (not torch)
        (
            "import torch.nn as nn\n",
            "self.fc = nn.Linear(3, 4)",
            "import math\n\nimport torch\nimport torch.nn as nn\n",
        ),
        (
            "import os\n\nimport torch\nfrom torch import Tensor\n",
            "self.fc = torch.nn.Linear(3, 4);self.scale: Tensor = torch.nn.Parameter(torch.ones(4))"
            ";self.where = os.sep",
            "import math\nimport os\n\nimport torch\nfrom torch import Tensor, nn\n",
        ),
        (
            "from __future__ import annotations\n\nimport math\n\nfrom torch import nn\n",
            "self.fc = nn.Linear(3, int(math.sqrt(16)))",
            "from __future__ import annotations\n\nimport math\n\nimport torch\n"
            "from torch import nn\n",
        ),
    ],
    ids=["import-torch.nn-as-nn", "join-from-torch-import", "future-and-math"],
)
def test_added_imports_keep_the_file_ruff_clean(tmp_path, imports, body, expected):
    ruff = shutil.which("ruff")
    assert ruff is not None, "ruff is part of the test extras"
    path = tmp_path / "net.py"
    head = '"""A model."""\n\n'
    nn_name = "nn" if "nn" in imports else "torch.nn"
    path.write_text(head + imports + _net(body).replace("(nn.Module)", f"({nn_name}.Module)"))
    cfg = ["check", "--isolated", "--select", "E,F,W,I", "--ignore", "E501"]
    before = subprocess.run([ruff, *cfg, str(path)], capture_output=True, text=True)
    assert before.returncode == 0, before.stdout  # the file starts out clean
    assert rewrite.rewrite(f"{path}:Net").written
    text = path.read_text()
    assert text.startswith(head + expected), text[:300]
    proc = subprocess.run([ruff, *cfg, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + text
