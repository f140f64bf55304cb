"""Origins name the code that set each value: torch's defaults, a library (which, which
version, which function) or the user's files; provenance records the libraries and sources."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from initaudit import snapshot
from initaudit.freeze import freeze
from initaudit.libraries import Library, reset_file_cache
from initaudit.libraries import classify_file as _classify_file
from initaudit.render.console import origin_text
from initaudit.target import Target, resolve
from initaudit.trace import trace_build

from ..models import tinydist

transformers = pytest.importorskip("transformers")
TV = transformers.__version__


def _entries(build, spec: str = "model.py") -> dict:
    snap, _ = freeze(Target(spec=spec, name="build", builder=build), 0)
    return snap.manifest


def test_gpt2_origins_name_transformers_version_function_and_file():
    """Every GPT-2 tensor is set by transformers' _init_weights: named with version and line."""

    def build():
        cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=16)
        return transformers.GPT2LMHeadModel(cfg)

    manifest = _entries(build)
    by = {t["name"]: t for t in manifest["tensors"]}
    attn = by["transformer.h.0.attn.c_attn.weight"]
    assert attn["origin"] == "library"
    lib = attn["library"]
    assert lib["name"] == "transformers" and lib["version"] == TV
    assert lib["function"] == "GPT2PreTrainedModel._init_weights"
    assert re.fullmatch(r"models/gpt2/modeling_gpt2\.py:\d+", lib["site"])
    assert origin_text(attn) == (
        f"transformers {TV} · GPT2PreTrainedModel._init_weights · {lib['site']}"
    )
    assert attn["init"]["call"] == "normal_"  # torch's init function, as before
    # The user's site is the first frame outside libraries: this test file.
    assert attn["site"].startswith("tests/trace/test_callsite.py:")
    assert {t["origin"] for t in manifest["tensors"]} == {"library"}
    prov = manifest["provenance"]
    assert prov["libraries"]["transformers"] == TV
    assert "torch" not in prov["libraries"]  # torch is recorded on its own
    assert prov["sources"]["tests/trace/test_callsite.py"].startswith("sha256:")


def test_bert_origins_name_bert_init_weights():
    def build():
        cfg = transformers.BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            vocab_size=100, max_position_embeddings=16,
        )  # fmt: skip
        return transformers.BertModel(cfg)

    manifest = _entries(build)
    by = {t["name"]: t for t in manifest["tensors"]}
    q = by["encoder.layer.0.attention.self.query.weight"]
    assert q["origin"] == "library" and q["library"]["name"] == "transformers"
    assert q["library"]["function"].endswith("._init_weights")
    print({t["name"]: origin_text(t) for t in manifest["tensors"]})


@pytest.fixture
def tiny_plain(tmp_path, monkeypatch):
    """tinyinit 1.0 installed with pip --target, importable from that folder."""
    src = tinydist.write_project(tmp_path / "src", "1.0", 0.02)
    where = tinydist.install(src, tmp_path / "site")
    monkeypatch.syspath_prepend(str(where))
    sys.modules.pop("tinyinit", None)
    reset_file_cache()
    yield importlib.import_module("tinyinit")
    sys.modules.pop("tinyinit", None)
    reset_file_cache()


def test_library_helper_is_the_readable_call_not_its_last_aten_op(tiny_plain):
    """tinyinit.trunc_normal_ writes with uniform_ … clamp_: the call shown is the helper."""
    manifest = _entries(lambda: tiny_plain.Block())
    by = {t["name"]: t for t in manifest["tensors"]}
    fc = by["fc.weight"]
    assert fc["origin"] == "library"
    assert fc["init"]["call"] == "tinyinit.trunc_normal_"
    assert fc["init"]["args"] == {"mean": 0.0, "std": 0.02, "a": -2.0, "b": 2.0}
    assert fc["init"]["text"] == "tinyinit.trunc_normal_(mean=0, std=0.02, a=-2, b=2)"
    assert fc["library"] == {
        "name": "tinyinit", "version": "1.0", "function": "Block.init_weights",
        "site": fc["library"]["site"],
    }  # fmt: skip
    assert fc["library"]["site"].startswith("__init__.py:")
    # One readable call: every op of the helper shares its call id (one recipe step).
    ops = [e for e in fc["events"] if e["kind"] != "alloc" and e["call"] == "tinyinit.trunc_normal_"]
    assert [e["op"] for e in ops] == ["uniform_", "erfinv_", "mul_", "add_", "clamp_"]
    assert len({e["call_id"] for e in ops}) == 1
    proj = by["proj.weight"]
    assert proj["init"]["call"] == "normal_" and proj["library"]["function"] == "Block.init_weights"
    # Biases nobody re-initialized keep torch's default: "default", not the library's.
    assert by["fc.bias"]["origin"] == "default"
    assert by["fc.bias"]["scope"] == "Linear.reset_parameters"
    assert manifest["provenance"]["libraries"] == {"tinyinit": "1.0"}
    # The trace still only observes.
    torch.manual_seed(0)
    plain = tiny_plain.Block()
    tr = trace_build(lambda: tiny_plain.Block(), 0)
    for name, t in plain.state_dict().items():
        assert torch.equal(t, tr.model.state_dict()[name]), name


def test_user_code_calling_a_library_helper_is_the_users(tiny_plain, tmp_path):
    """The user chose the init (the helper is only a tool): origin user, call the helper."""

    def build():
        m = torch.nn.Linear(3, 3)
        tiny_plain.trunc_normal_(m.weight, std=0.5)
        return m

    manifest = _entries(build)
    w = next(t for t in manifest["tensors"] if t["name"] == "weight")
    assert w["origin"] == "user" and w["init"]["call"] == "tinyinit.trunc_normal_"
    assert w["site"].startswith("tests/trace/test_callsite.py:")
    assert w["library"]["name"] == "tinyinit"


def test_editable_install_counts_as_the_users_inside_its_project(tmp_path, monkeypatch):
    """pip install -e of the user's own project: its files are the user's, not a library."""
    import site

    proj = tinydist.write_project(tmp_path / "proj", "0.1", 0.02)
    sitedir = tinydist.install_editable(proj, tmp_path / "prefix")
    saved = list(sys.path), list(sys.meta_path), sys.path_importer_cache.copy()
    try:
        site.addsitedir(str(sitedir))
        sys.modules.pop("tinyinit", None)
        mod = importlib.import_module("tinyinit")
        path = str(Path(mod.__file__).resolve())
        assert path.startswith(str(proj.resolve()))  # imported from the project, editable
        monkeypatch.chdir(proj)
        reset_file_cache()
        assert _classify_file(path) == "user"
        (tmp_path / "other").mkdir()
        monkeypatch.chdir(tmp_path / "other")  # elsewhere: someone else's editable library
        reset_file_cache()
        lib = _classify_file(path)
        assert isinstance(lib, Library) and (lib.name, lib.version) == ("tinyinit", "0.1")
        assert lib.path == "tinyinit/__init__.py"
    finally:
        sys.path[:], sys.meta_path[:] = saved[0], saved[1]
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(saved[2])
        sys.modules.pop("tinyinit", None)
        reset_file_cache()


def test_old_snapshot_without_code_provenance_reads_and_diffs():
    """Snapshots frozen before libraries/sources were recorded still read and compare."""
    from initaudit.diff import diff_snapshots

    from ..conftest import ROOT

    old = snapshot.read(ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json")
    assert "libraries" not in old.environment
    fresh, _ = freeze(resolve(str(ROOT / "examples" / "mlp.py")), 0)
    assert "libraries" in fresh.environment and "sources" in fresh.environment
    report = diff_snapshots(old, fresh)
    assert "libraries" not in report.environment and "sources" not in report.environment


def test_inspect_counts_only_torch_defaults_as_kept_defaults(tiny_plain):
    """A tensor tinyinit set is neither the user's nor torch's: kept-default counts fc.bias only."""
    from initaudit.audit import inspect_target
    from initaudit.render.audit import short_source

    report = inspect_target(Target(spec="blk.py", name="blk", builder=tiny_plain.Block), 0, rerun=False)
    rows = {r.name: r for r in report.tensors}
    assert rows["fc.weight"].origin == "library"
    assert rows["fc.weight"].init == "tinyinit.trunc_normal_(mean=0, std=0.02, a=-2, b=2)"
    assert rows["fc.weight"].source.startswith("tinyinit 1.0 · Block.init_weights · __init__.py:")
    assert short_source(rows["proj.weight"]) == "tinyinit 1.0 Block.init_weights"
    assert rows["fc.weight"].to_json()["library"]["name"] == "tinyinit"
    (kept,) = [f for f in report.findings if f.kind == "kept-default"]
    assert kept.tensors == ["fc.bias"]
    assert kept.message.startswith("1 of 4 parameters keep torch's implicit default init")
    (missed,) = kept.details["missed"]
    assert "while tinyinit code set the others at Block.init_weights __init__.py:" in missed
    assert "user code" not in kept.message


def test_explicit_code_names_the_library_and_reproduces_it(tiny_plain, tmp_path):
    """explicit replays a library helper's ATen ops and says which library set the tensor."""
    from initaudit import codegen

    target = Target(spec="blk.py", name="blk", builder=tiny_plain.Block)
    program = codegen.trace_program(target.build, 0, label="blk", spec="blk.py")
    source = codegen.generate(program)
    assert "# tinyinit Block.init_weights" in source
    result = codegen.verify_source(program, source, target.build)
    assert result.ok, result.mismatches


def test_site_packages_inside_the_stdlib_folder_is_not_stdlib():
    """A non-venv Python (/usr/local/lib/python3.11/site-packages) keeps libraries visible."""
    import os
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    reset_file_cache()
    assert _classify_file(os.path.join(stdlib, "os.py")) == "stdlib"
    assert _classify_file(os.path.join(stdlib, "site-packages", "nolib", "x.py")) != "stdlib"
    reset_file_cache()
