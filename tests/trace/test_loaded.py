"""Checkpoint-loaded models: tensors from the checkpoint read ``loaded`` (from which file), the
ones the build initialized keep their init and library (a real transformers from_pretrained)."""

from __future__ import annotations

import pytest

from initaudit.audit import inspect_target
from initaudit.freeze import freeze
from initaudit.render.console import origin_text
from initaudit.target import Target

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A BERT base model from a small config, saved locally (no hub access)."""
    cfg = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, max_position_embeddings=16,
    )  # fmt: skip
    where = tmp_path_factory.mktemp("ckpt")
    transformers.BertModel(cfg).save_pretrained(where)
    return where


def _target(where):
    def build():
        auto = transformers.AutoModelForSequenceClassification
        return auto.from_pretrained(str(where), num_labels=3)

    return Target(spec="classifier.py", name="build", builder=build)


def test_loaded_tensors_name_their_file_and_new_ones_their_init(checkpoint):
    snap, _ = freeze(_target(checkpoint), 0)
    by = {t["name"]: t for t in snap.tensors}
    q = by["bert.encoder.layer.0.attention.self.query.weight"]
    assert q["origin"] == "loaded"
    assert q["loaded"]["key"] == "encoder.layer.0.attention.self.query.weight"  # saved without "bert."
    assert q["loaded"]["file"].endswith("model.safetensors")
    assert origin_text(q) == f"loaded from {q['loaded']['file']}"
    head = by["classifier.weight"]
    assert head["origin"] == "library" and head["init"]["call"] == "normal_"
    assert head["library"]["name"] == "transformers"
    assert head["library"]["function"].endswith("._init_weights")
    assert by["classifier.bias"]["init"]["call"] == "zeros_"
    loaded = {n for n, t in by.items() if t["origin"] == "loaded"}
    assert "classifier.weight" not in loaded and len(loaded) >= 20

    report = inspect_target(_target(checkpoint), 0, rerun=False)
    (finding,) = [f for f in report.findings if f.kind == "loaded"]
    assert "classifier.weight" in finding.tensors and "classifier.bias" in finding.tensors
    assert set(finding.details["loaded"]) == loaded
    assert "newly initialized" in finding.message and "normal_(mean=0, std=0.02)" in finding.message


def test_a_storage_argument_is_recorded_by_size_not_by_every_byte():
    """transformers 4.x loads with ``param.set_(storage)``: the event must not list the bytes."""
    import torch
    from torch import nn

    def build():
        m = nn.Linear(2, 2)
        with torch.no_grad():
            m.weight.set_(torch.ones(4).untyped_storage(), 0, (2, 2), (2, 1))
        return m

    snap, _ = freeze(Target(spec="setter.py", name="build", builder=build), 0)
    (w,) = [t for t in snap.tensors if t["name"] == "weight"]
    sets = [e for e in w["events"] if e["op"] == "set_"]
    assert sets and all(e["args"].get("source") == "<storage 16 bytes>" for e in sets), sets
