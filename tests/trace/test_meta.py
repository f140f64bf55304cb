"""Streamed (meta trace + replay) digests equal a real build's, bit for bit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from initaudit import snapshot, target
from initaudit.envs import environments as E
from initaudit.errors import StreamError
from initaudit.freeze import freeze
from initaudit.freeze.stream import stream_freeze
from initaudit.snapshot.values import write_safetensors
from initaudit.trace.meta import estimate_bytes, meta_size, meta_trace, replay
from tests.conftest import EXAMPLES
from tests.envs.test_environments import session_env_dir

MODELS = Path(__file__).resolve().parents[1] / "models" / "stream_models.py"

SPECS = [
    str(EXAMPLES / "mlp.py"),
    str(EXAMPLES / "highway.py"),  # BatchNorm's torch.tensor(0) buffer, fill_ on a bias
    str(EXAMPLES / "cnn.py"),
    f"{MODELS}:TinyViT",  # trunc_normal_ (a rejection loop in this torch): replayed for real
    f"{MODELS}:OrthoRNN",  # orthogonal_ (QR), xavier, tied embedding/decoder
    f"{MODELS}:gpt2_tiny",  # transformers GPT-2, lm_head tied to wte
    f"{MODELS}:llama_tiny",  # transformers Llama, rotary buffers computed in the build
    f"{MODELS}:bert_tiny",
    f"{MODELS}:DropPathNet",  # linspace(...).tolist() and .item(): computed for real
    f"{MODELS}:RegNetWidths",  # arange, round, unique (no meta kernel): computed for real
    f"{MODELS}:ForwardInBuild",  # an eval forward (BatchNorm in eval) on meta in the build
    f"{MODELS}:SmallValuesIntoParameters",  # real small values copied/multiplied into params
    f"{MODELS}:NoMetaKernel",  # histogram: no meta kernel, the CPU kernel gives the shapes
    f"{MODELS}:CapturedInit",  # trunc_normal_/orthogonal_ through references taken at import
]


def _compare(spec: str, seed: int = 0) -> tuple[dict, dict]:
    tg = target.resolve(spec, {})
    real, _ = freeze(tg, seed)
    streamed, result = stream_freeze(tg, seed)
    assert result.ops > 0
    return real.manifest, streamed.manifest


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.rsplit("/", 1)[-1])
def test_streamed_digests_equal_a_real_build(spec: str) -> None:
    real, streamed = _compare(spec)
    a, b = real["tensors"], streamed["tensors"]
    assert [t["name"] for t in a] == [t["name"] for t in b]
    assert len(a) > 0
    for x, y in zip(a, b, strict=True):
        assert x["hash"] == y["hash"], x["name"]
        assert x["stats"] == y["stats"], x["name"]
        assert x["aliases"] == y["aliases"], x["name"]
        assert x["shape"] == y["shape"] and x["dtype"] == y["dtype"]
        assert x["rng_before"] == y["rng_before"], x["name"]
        assert (x["init"] or {}).get("call") == (y["init"] or {}).get("call"), x["name"]
    assert real["rng"]["torch_after"] == streamed["rng"]["torch_after"]
    assert streamed["provenance"]["streamed"] is True


def test_tied_weights_stay_one_entry_with_aliases() -> None:
    _, streamed = _compare(f"{MODELS}:gpt2_tiny")
    names = {t["name"]: t for t in streamed["tensors"]}
    assert "lm_head.weight" in names["transformer.wte.weight"]["aliases"]
    assert "lm_head.weight" not in names


def test_the_streamed_digest_changes_with_the_seed() -> None:
    """A check that cannot fail is a defect: another seed gives other digests."""
    tg = target.resolve(f"{MODELS}:TinyViT", {})
    s0, _ = stream_freeze(tg, 0)
    s1, _ = stream_freeze(tg, 1)
    h0 = {t["name"]: t["hash"] for t in s0.manifest["tensors"]}
    h1 = {t["name"]: t["hash"] for t in s1.manifest["tensors"]}
    assert h0["pos_embed"] != h1["pos_embed"]
    assert h0["norm.weight"] == h1["norm.weight"]  # ones either way


def test_the_meta_trace_allocates_no_values() -> None:
    tg = target.resolve(f"{MODELS}:llama_tiny", {})
    trace, tracer = meta_trace(tg.build, 0)
    params = [tt for tt in trace.tensors if tt.kind == "parameter"]
    assert params and all(tt.tensor.device.type == "meta" for tt in params)
    # Only small values computed in the build are real: the rotary inv_freq (from arange).
    real = [tt for tt in trace.tensors if tt.tensor.device.type != "meta"]
    assert all(tt.kind == "buffer" and tt.tensor.numel() <= 1 << 20 for tt in real)
    assert estimate_bytes(trace) == meta_size(tg.build, None)
    assert len(tracer.program) > 0


def test_a_build_that_reads_values_is_refused_clearly() -> None:
    tg = target.resolve(f"{MODELS}:ReadsValues", {})
    with pytest.raises(StreamError, match="meta device") as info:
        stream_freeze(tg, 0)
    assert "run the same command without --stream" in str(info.value)  # what to do instead


def test_replay_frees_storages_as_it_goes() -> None:
    """Peak live storage during replay stays near the largest tensor, far below the model."""
    tg = target.resolve(f"{MODELS}:linear_stack", {})
    trace, tracer = meta_trace(tg.build, 0)
    done = []
    result = replay(trace, tracer, 0, on_tensor=lambda i, n, b, s: done.append(i))
    model = estimate_bytes(trace)
    largest = max(tt.record.nbytes for tt in trace.tensors)
    assert result.nbytes == model
    assert largest <= result.peak_live_bytes <= 2 * largest < model / 4
    assert done == list(range(1, len(trace.tensors) + 1))


def test_safetensors_writer_is_read_back_by_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    tensors = {
        "a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b": torch.tensor([True, False]),
        "c": torch.zeros(0, 5, dtype=torch.float64),
        "d": torch.arange(6, dtype=torch.int64)[::2],
    }
    digest = write_safetensors(tensors, tmp_path / "x.safetensors", {"format": "t"})
    back = load_file(str(tmp_path / "x.safetensors"))
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(back[k], v)
    assert digest == snapshot.file_sha256(tmp_path / "x.safetensors")


def test_cli_stream_equals_in_memory_digest(cli, tmp_path: Path) -> None:
    spec = f"{MODELS}:TinyViT"
    cli("freeze", spec, "--digest-only", "--stream", "--out", str(tmp_path / "s.json"), check=0)
    cli("freeze", spec, "--digest-only", "--out", str(tmp_path / "r.json"), check=0)
    s = json.loads((tmp_path / "s.json").read_text())
    r = json.loads((tmp_path / "r.json").read_text())
    assert [t["hash"] for t in s["tensors"]] == [t["hash"] for t in r["tensors"]]
    assert s["values"] is None and not (tmp_path / "s.safetensors").exists()
    assert s["provenance"]["streamed"] is True and "streamed" not in r["provenance"]


def test_cli_stream_needs_digest_only(cli, tmp_path: Path) -> None:
    proc = cli("freeze", str(EXAMPLES / "mlp.py"), "--stream", "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 2
    assert "--stream needs --digest-only" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_small_computed_values_are_real_and_the_model_stays_on_meta() -> None:
    """Parameters and buffers stay on meta; only the computed values (rates, widths) are real."""
    for name in ("DropPathNet", "RegNetWidths", "ForwardInBuild"):
        tg = target.resolve(f"{MODELS}:{name}", {})
        trace, _ = meta_trace(tg.build, 0)
        real = [tt.name for tt in trace.tensors if tt.tensor.device.type != "meta"]
        # BatchNorm's num_batches_tracked is a torch.tensor(0): real, as it always was.
        assert all(n.endswith("num_batches_tracked") for n in real), (name, real)
        assert estimate_bytes(trace) > 0
    model = trace.model
    assert model.head.in_features == 12 * 7 * 7  # sized by the forward on meta


def test_rates_and_widths_computed_in_the_build_are_the_real_ones() -> None:
    real = target.resolve(f"{MODELS}:RegNetWidths", {}).build()
    tg = target.resolve(f"{MODELS}:RegNetWidths", {})
    trace, _ = meta_trace(tg.build, 0)
    assert trace.model.widths == real.widths and len(real.widths) > 1
    dp = target.resolve(f"{MODELS}:DropPathNet", {})
    trace, _ = meta_trace(dp.build, 0)
    assert trace.model.rates == dp.build().rates and trace.model.rates[-1] > 0


def test_a_value_drawn_during_the_build_and_read_is_refused_naming_the_op() -> None:
    tg = target.resolve(f"{MODELS}:ReadsADrawnValue", {})
    with pytest.raises(StreamError) as info:
        stream_freeze(tg, 0)
    msg = str(info.value)
    assert "_local_scalar_dense" in msg and "drawn at random" in msg
    assert "stream_models.py:" in msg and "in __init__" in msg  # where the build reads it
    assert "run the same command without --stream" in msg


def test_a_build_reading_a_parameter_names_the_op_and_the_line() -> None:
    tg = target.resolve(f"{MODELS}:ReadsValues", {})
    with pytest.raises(StreamError) as info:
        stream_freeze(tg, 0)
    msg = str(info.value)
    assert "_local_scalar_dense" in msg and "stream_models.py:" in msg


def test_transformers_convnext_with_drop_path_streams_bit_for_bit() -> None:
    """transformers ConvNeXt computes its drop-path rates with linspace(...).tolist()."""
    test_streamed_digests_equal_a_real_build(f"{MODELS}:hf_convnext_drop_path")


# --------------------------------------------------------------------------- real models

#: torch, torchvision and timm for the real-model tests (the torchvision wheel for torch
#: 2.13.0 does not import beside the CPU torch; see tests/test_torchvision_models.py).
REAL_ENV = ("2.14.1", ("torchvision==0.29.1", "timm==1.0.31"))

REAL_MODELS = [
    # widths from arange/round/.int().tolist()
    ("torchvision.models:regnet_y_400mf", ()),
    # an eval forward in the build (BatchNorm in eval on meta)
    ("torchvision.models.detection:ssdlite320_mobilenet_v3_large", ("weights_backbone=None",)),
    # drop-path rates from [x.item() for x in torch.linspace(...)]
    ("timm:create_model", ("model_name='vit_tiny_patch16_224'", "drop_path_rate=0.1")),
    # aten::_unique2 (no meta kernel) on widths computed in the build
    ("timm:create_model", ("model_name='regnety_002'",)),
]


@pytest.fixture(scope="module")
def real_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch_version, extra = REAL_ENV
    return E.ensure(torch_version, session_env_dir(tmp_path_factory), extra=extra).python


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "args"), REAL_MODELS, ids=lambda x: str(x).split(":")[-1])
def test_real_models_stream_bit_for_bit(real_python: Path, tmp_path: Path, spec, args) -> None:
    """``freeze --digest-only --stream`` equals the in-memory ``freeze --digest-only``."""
    extra = [x for a in args for x in ("--arg", a)]
    out = {}
    for mode in ("stream", "memory"):
        path = tmp_path / f"{mode}.json"
        cmd = [str(real_python), "-m", "initaudit", "freeze", spec, *extra, "--digest-only",
               "--out", str(path), "-q", *(["--stream"] if mode == "stream" else [])]  # fmt: skip
        env = E.child_environ()
        env["NO_COLOR"] = "1"
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[mode] = json.loads(path.read_text())
    streamed, real = out["stream"], out["memory"]
    assert streamed["provenance"]["streamed"] is True
    a, b = real["tensors"], streamed["tensors"]
    assert len(a) > 10 and [t["name"] for t in a] == [t["name"] for t in b]
    for x, y in zip(a, b, strict=True):
        assert (x["hash"], x["stats"], x["rng_before"]) == (y["hash"], y["stats"], y["rng_before"])
    assert real["rng"]["torch_after"] == streamed["rng"]["torch_after"]


def test_init_references_taken_during_a_trace_get_the_originals_back() -> None:
    from torch import nn

    import tests.models.stream_models as sm

    before = dict(sm.CAPTURED_INIT)
    meta_trace(lambda: sm.CapturedInit(), 0)
    assert sm.CAPTURED_INIT == before and sm.captured_trunc_normal_ is nn.init.trunc_normal_
