"""``initaudit matrix`` (real environments, real subprocesses) and ``initaudit diff DIR``."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from initaudit.envs import environments as E
from initaudit.envs.matrix import build_columns, gather, running_torch
from initaudit.errors import UsageError
from tests.conftest import EXAMPLES, ROOT, run_cli
from tests.envs.test_environments import VERSION, pip_lines, session_env_dir


@pytest.fixture(scope="session")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_env_dir(tmp_path_factory)


def built_lines(env_dir: Path) -> list[str]:
    log = (env_dir / E.LOG_NAME).read_text(encoding="utf-8").splitlines()
    return [ln for ln in log if " built " in ln]


# --------------------------------------------------------------------------- matrix


def test_same_version_twice_is_identical_and_the_environment_is_built_once(env_dir, tmp_path):
    E.ensure(VERSION, env_dir)  # in sync with the current source (others may edit it)
    built, pips = built_lines(env_dir), pip_lines(env_dir)
    fingerprint = E.source_fingerprint()
    proc = run_cli(
        "matrix", str(EXAMPLES / "mlp.py"), "--torch", VERSION, "--torch", VERSION,
        "--env-dir", str(env_dir), "--format", "json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [v.split("+")[0] for v in data["versions"]] == [VERSION, VERSION]
    assert data["verdict"] == "identical"
    (pair,) = data["pairs"]
    assert pair["from"] == data["versions"][0] and pair["to"] == data["versions"][1]
    assert pair["verdict"] == "identical" and pair["root_cause"] is None
    names = [t["name"] for t in pair["tensors"]]
    assert names and {t["status"] for t in pair["tensors"]} == {"identical"}
    assert "hid1.weight" in names and "oupt.bias" in names
    # one environment, shared by both freezes, reused (the session built it), nothing installed
    assert [e["reused"] for e in data["environments"]] == [True]
    assert built_lines(env_dir) == built
    if E.source_fingerprint() == fingerprint:
        assert pip_lines(env_dir) == pips
    # two independent freezes, in snapshots/<model>/, never overwriting each other
    snaps = sorted(p.name for p in (tmp_path / "snapshots" / "mlp").iterdir())
    assert len(snaps) == 4 and any("-run2.json" in s for s in snaps), snaps
    assert not list((tmp_path / "snapshots").glob(".initaudit-matrix-*"))
    manifest = next(s for s in snaps if s.endswith(".json"))
    frozen = json.loads((tmp_path / "snapshots" / "mlp" / manifest).read_text())
    assert frozen["provenance"]["torch"] == data["versions"][0]


def test_text_matrix_has_versions_across_and_modules_down(env_dir, tmp_path):
    proc = run_cli(
        "matrix", str(EXAMPLES / "highway.py"), "--torch", VERSION, "--torch", VERSION,
        "--env-dir", str(env_dir), "--jobs", "2", cwd=tmp_path, env={"COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "IDENTICAL" in out
    header = next(ln for ln in out.splitlines() if "tensor" in ln and VERSION in ln)
    assert header.count(VERSION) == 2
    assert "stage_1.0.conv_a" in out  # a module row
    assert "identical" in out and "→" in out


def test_columns_from_env_specs_with_and_torch():
    here = running_torch()
    assert "+" not in here  # 2.13.0+cpu is pinned as torch==2.13.0: pip resolves the local build
    a, b = build_columns(envs=["transformers==4.57.6", "Transformers==5.0.0  tokenizers"])
    assert a.requirements == (f"torch=={here}", "transformers==4.57.6")
    assert b.requirements == (f"torch=={here}", "tokenizers", "transformers==5.0.0")
    assert b.names == ("torch", "tokenizers", "transformers")
    c, d = build_columns(envs=["torch==2.14.1", "torch==2.13.0+cpu"], extra=("timm==1.0.9",))
    assert (c.torch, c.extra) == ("2.14.1", ("timm==1.0.9",))
    assert d.torch == "2.13.0+cpu"
    # --torch V is --env torch==V: the same columns, so the same cached environments
    t = build_columns(versions=["2.13.0", "2.14.1"], extra=("transformers",))
    e = build_columns(envs=["torch==2.13.0", "torch==2.14.1"], extra=("transformers",))
    assert [(x.torch, x.extra) for x in t] == [(x.torch, x.extra) for x in e]
    w = build_columns(envs=["transformers==5.0.0", "transformers==5.0.0"], extra=("torch==2.14.1",))
    assert {x.torch for x in w} == {"2.14.1"}


@pytest.mark.parametrize(
    ("columns", "said"),
    [
        (["--env", "transformers==5.0.0"], "at least two"),
        (["--env", "transformers==5.0.0", "--env", "-e ."], "'-e' is a pip option"),
        (["--env", "transformers==5.0.0", "--env", "torch>=2.13"], "pin torch to one release"),
        (["--env", "torch", "--env", "torch==2.13.0"], "pin torch to one release"),
        (["--env", "a==1", "--env", "a==2", "--with", "a"], "given both in --env"),
        (["--env", "a==1 a==2", "--env", "a==3"], "names a twice"),
        (["--env", "a==1", "--env", "./pkg"], "not a pip requirement"),
        (["--env", "a==1", "--env", "  "], "is empty"),
        (["--torch", VERSION, "--env", "a==1"], "not both"),
        (["--env", "a==1", "--env", "torch==1.13.1"], "older than initaudit supports"),
    ],
)
def test_bad_columns_are_refused_before_anything_is_installed(tmp_path, columns, said):
    proc = run_cli(
        "matrix", str(EXAMPLES / "mlp.py"), *columns, "--env-dir", str(tmp_path / "envs"),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "envs").exists()


def test_freeze_records_the_versions_a_column_was_made_for(tmp_path):
    """$INITAUDIT_ENV_REQUIREMENTS (set by matrix, or by a CI job) names the distributions
    whose installed versions the provenance records as env_requirements."""
    import numpy
    import torch

    env = {"INITAUDIT_ENV_REQUIREMENTS": "torch, NumPy not-installed-anywhere"}
    run_cli(
        "freeze", str(EXAMPLES / "mlp.py"), "--out", str(tmp_path / "a.json"), cwd=tmp_path,
        env=env, check=0,
    )  # fmt: skip
    prov = json.loads((tmp_path / "a.json").read_text())["provenance"]
    assert prov["env_requirements"] == {
        "not-installed-anywhere": None,
        "numpy": numpy.__version__,
        "torch": str(torch.__version__),
    }
    run_cli("freeze", str(EXAMPLES / "mlp.py"), "--out", str(tmp_path / "b.json"), check=0)
    assert "env_requirements" not in json.loads((tmp_path / "b.json").read_text())["provenance"]


def test_matrix_needs_two_versions(tmp_path):
    proc = run_cli("matrix", str(EXAMPLES / "mlp.py"), "--torch", VERSION, cwd=tmp_path)
    assert proc.returncode == 2 and "at least two --torch versions" in proc.stderr


def test_a_bad_target_is_a_clear_error(env_dir, tmp_path):
    proc = run_cli(
        "matrix", str(tmp_path / "missing.py"), "--torch", VERSION, "--torch", VERSION,
        "--env-dir", str(env_dir), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "missing.py" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "snapshots").rglob("*.json"))


# --------------------------------------------------------------------------- diff DIR

MODEL = """\
import os
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 8)
        if os.environ.get("NORMAL_BIAS"):  # a changed default, as a torch upgrade could bring
            nn.init.normal_(self.proj.bias, std=0.01)  # (it also draws more random numbers)
        self.head = nn.Linear(8, 4)
"""


def relabel(src: Path, dest_dir: Path, torch_version: str) -> Path:
    """A copy of a real snapshot whose provenance names another torch version."""
    dest_dir.mkdir(parents=True)
    manifest = json.loads(src.read_text())
    manifest["provenance"]["torch"] = torch_version
    shutil.copy(src.parent / manifest["values"]["file"], dest_dir / manifest["values"]["file"])
    out = dest_dir / src.name
    out.write_text(json.dumps(manifest))
    return out


def test_diff_dir_orders_by_version_not_by_name(tmp_path):
    src = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"
    # lexical order of the folders (a, b, c) is the reverse of the version order
    relabel(src, tmp_path / "a", "2.13.0+cpu")
    relabel(src, tmp_path / "b", "2.10.0")
    relabel(src, tmp_path / "c", "2.9.1")
    assert [s.environment["torch"] for s in gather(tmp_path)] == ["2.9.1", "2.10.0", "2.13.0+cpu"]
    proc = run_cli("diff", str(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["versions"] == ["2.9.1", "2.10.0", "2.13.0+cpu"]
    assert [(p["from"], p["to"]) for p in data["pairs"]] == [
        ("2.9.1", "2.10.0"),
        ("2.10.0", "2.13.0+cpu"),
    ]
    assert all(p["verdict"] == "identical" for p in data["pairs"])
    md = run_cli("diff", str(tmp_path), "--format", "markdown", check=0).stdout
    assert "| tensor | torch 2.9.1 | torch 2.10.0 | torch 2.13.0+cpu |" in md


def test_diff_dir_orders_by_what_varies_in_env_requirements(tmp_path):
    """Snapshots a library matrix froze (one torch, three transformers) order by the library."""
    src = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"
    for folder, version in (("a", "5.0.0"), ("b", "4.57.6"), ("c", "4.10.0")):
        out = relabel(src, tmp_path / folder, "2.13.0+cpu")
        manifest = json.loads(out.read_text())
        manifest["provenance"]["env_requirements"] = {"torch": "2.13.0+cpu", "transformers": version}
        out.write_text(json.dumps(manifest))
    order = [s.environment["env_requirements"]["transformers"] for s in gather(tmp_path)]
    assert order == ["4.10.0", "4.57.6", "5.0.0"]  # by version, not by folder or text
    proc = run_cli("diff", str(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["varying"] == ["transformers"]
    assert data["versions"] == ["transformers-4.10.0", "transformers-4.57.6", "transformers-5.0.0"]
    assert [(p["from"], p["to"]) for p in data["pairs"]] == [
        ("transformers-4.10.0", "transformers-4.57.6"),
        ("transformers-4.57.6", "transformers-5.0.0"),
    ]
    assert data["pairs"][0]["environment"] == {
        "env_requirements.transformers": {"before": "4.10.0", "after": "4.57.6"}
    }
    md = run_cli("diff", str(tmp_path), "--format", "markdown", check=0).stdout
    assert "| tensor | transformers-4.10.0 | transformers-4.57.6 | transformers-5.0.0 |" in md


def test_diff_dir_finds_real_drift_and_its_root_cause(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(textwrap.dedent(MODEL))
    run_cli("freeze", str(model), "--snapshot-dir", str(tmp_path / "old"), cwd=tmp_path, check=0)
    run_cli(
        "freeze", str(model), "--snapshot-dir", str(tmp_path / "new"), cwd=tmp_path,
        env={"NORMAL_BIAS": "1"}, check=0,
    )  # fmt: skip
    # the same torch in both: order by path, so relabel the new one as the next release
    new = next((tmp_path / "new").rglob("*.json"))
    relabel(new, tmp_path / "folder" / "z-new", "9.9.9")
    shutil.copytree(tmp_path / "old", tmp_path / "folder" / "a-old")
    proc = run_cli("diff", str(tmp_path / "folder"), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    (pair,) = json.loads(proc.stdout)["pairs"]
    assert pair["verdict"] == "drift" and pair["root_cause"] == "proj.bias"
    status = {t["name"]: t["status"] for t in pair["tensors"]}
    assert status["embed.weight"] == status["proj.weight"] == "identical"
    assert status["proj.bias"] == "recipe-drift"
    assert status["head.weight"] == "stream-shift"
    text = run_cli("diff", str(tmp_path / "folder"), env={"COLUMNS": "200"}).stdout
    assert "DRIFT" in text and "root cause proj.bias" in text


def test_diff_dir_refuses_mixed_targets_and_too_few(tmp_path):
    shutil.copytree(ROOT / "snapshots" / "mlp", tmp_path / "one")
    proc = run_cli("diff", str(tmp_path / "one"))
    assert proc.returncode == 2 and "at least two" in proc.stderr
    shutil.copytree(ROOT / "snapshots" / "cnn", tmp_path / "one" / "cnn")
    proc = run_cli("diff", str(tmp_path / "one"))
    assert proc.returncode == 2 and "one target" in proc.stderr
    with pytest.raises(UsageError, match="not a folder"):
        gather(tmp_path / "nope")


# --------------------------------------------------------------------------- real releases


@pytest.mark.slow
def test_torch_2_13_against_2_14_on_highway(env_dir, tmp_path):
    """Real releases side by side: 2.13.0 (CPU build) and 2.14.1 (CUDA build, run on the CPU;
    a 5.5 GB environment, built in the session's cache beside the 2.13.0 one)."""
    proc = run_cli(
        "matrix", str(EXAMPLES / "highway.py"), "--torch", "2.13.0", "--torch", "2.14.1",
        "--jobs", "2", "--env-dir", str(env_dir), "--format", "json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    assert data["versions"][0].startswith("2.13.0") and data["versions"][1].startswith("2.14.1")
    (pair,) = data["pairs"]
    assert proc.returncode == (1 if pair["verdict"] == "drift" else 0)
    # What we measured (README, "Gate a PyTorch upgrade"): both releases build the highway net
    # bit for bit alike on the same CPU; only the torch version and its git hash changed.
    assert pair["verdict"] == "identical", pair
    assert {t["status"] for t in pair["tensors"]} == {"identical"} and len(pair["tensors"]) == 50
    assert {"torch", "torch_git"} <= set(pair["environment"])
    assert not {"cpu_capability", "device", "default_dtype"} & set(pair["environment"])
    # the CI gathering step over the same snapshots gives the same answer
    again = run_cli("diff", str(tmp_path / "snapshots" / "highway"), "--format", "json")
    assert again.returncode == proc.returncode
    (pair2,) = json.loads(again.stdout)["pairs"]
    assert pair2["tensors"] == pair["tensors"] and pair2["root_cause"] == pair["root_cause"]


@pytest.mark.slow
def test_torch_2_1_to_2_13_is_a_real_trunc_normal_drift(env_dir, tmp_path):
    """The oldest supported release against today's: torch 2.1.2 comes from PyPI (a CUDA build,
    ~4.7 GB installed, run on the CPU). Its trunc_normal_ used the inverse CDF; 2.13.0 draws
    normal_ and rejects: the tensor is implementation-drift and the root cause, nothing else
    moves (the draw count is the same), and 2.13.0 → 2.14.1 is identical."""
    proc = run_cli(
        "matrix", str(ROOT / "tests" / "models" / "release_probes.py"),
        "--torch", "2.1.2", "--torch", "2.13.0", "--torch", "2.14.1",
        "--jobs", "2", "--env-dir", str(env_dir), "--format", "json", cwd=tmp_path,
    )  # fmt: skip
    if proc.returncode == 2 and "could not reach a package index" in proc.stderr:
        pytest.skip(f"torch 2.1.2 must come from PyPI: {proc.stderr.strip()}")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    old, new = data["pairs"]
    assert (old["from"].split("+")[0], old["to"].split("+")[0]) == ("2.1.2", "2.13.0")
    assert old["verdict"] == "drift" and old["root_cause"] == "pos"
    status = {t["name"]: t["status"] for t in old["tensors"]}
    assert status.pop("pos") == "implementation-drift"
    assert set(status.values()) == {"identical"} and len(status) == 31
    (pos,) = [t for t in old["tensors"] if t["name"] == "pos"]
    assert "erfinv_" in pos["reason"] and "normal_" in pos["reason"]
    assert pos["error"]["differing"] == 512
    assert old["environment"]["torch"]["before"].startswith("2.1.2")
    assert new["verdict"] == "identical" and new["root_cause"] is None


# --------------------------------------------------------------------------- real library releases

#: Two transformers releases, each in its own environment beside torch 2.13.0 (pure Python,
#: from PyPI; both start as hard links to the session's torch 2.13.0 environment, ~1 min to
#: build both). GPT-2 and BERT run in the default suite; more architectures with the slow tests.
HF_OLD, HF_NEW = "4.57.6", "5.0.0"
HF_MODELS = ROOT / "tests" / "models" / "hf_tiny.py"


@pytest.fixture(scope="session")
def hf_env_dir(env_dir: Path) -> Path:
    """The session's cache holding transformers 4.57.6 and 5.0.0 environments (built once)."""
    for version in (HF_OLD, HF_NEW):
        try:
            E.ensure(VERSION, env_dir, extra=(f"transformers=={version}",))
        except Exception as exc:  # no index reachable: say so rather than fail
            if "could not reach a package index" in str(exc) or "no release at all" in str(exc):
                pytest.skip(f"transformers {version} must come from PyPI: {exc}")
            raise
    return env_dir


def hf_matrix(arch: str, env_dir: Path, cwd: Path, *releases: str) -> tuple[int, dict]:
    envs = [x for v in releases for x in ("--env", f"transformers=={v}")]
    proc = run_cli(
        "matrix", f"{HF_MODELS}:{arch}", *envs, "--env-dir", str(env_dir), "--jobs", "2",
        "--format", "json", cwd=cwd,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


#: What both transformers columns' environment diff says (and nothing else changes).
HF_ENVIRONMENT = {
    "env_requirements.transformers": {"before": HF_OLD, "after": HF_NEW},
    "libraries": {"transformers": {"before": HF_OLD, "after": HF_NEW}},
}


@pytest.mark.parametrize(
    ("arch", "root_cause", "status", "function", "changed"),
    [
        # measured (README, "Init drift between library releases (measured)"): GPT-2 5.0.0 drops
        # the masked_bias buffer and loses the 1/sqrt(2·n_layer) scaling of c_proj (std 0.01 → 0.02)
        ("gpt2", "h.0.attn.masked_bias", "removed", "GPT2Attention.__init__",
         {"h.0.attn.c_proj.weight": "recipe-drift", "h.0.mlp.c_proj.weight": "recipe-drift"}),
        # T5 5.0.0 draws the shared embedding through its new init helper (another op sequence)
        pytest.param("t5", "shared.weight", "recipe-drift", "T5PreTrainedModel._init_weights", {},
                     marks=pytest.mark.slow),
        # Llama 5.0.0 adds a rotary_emb.original_inv_freq buffer
        pytest.param("llama", "rotary_emb.original_inv_freq", "added",
                     "LlamaRotaryEmbedding.compute_default_rope_parameters", {},
                     marks=pytest.mark.slow),
    ],
)  # fmt: skip
def test_transformers_release_drift_is_found(hf_env_dir, tmp_path, arch, root_cause, status,
                                             function, changed):  # fmt: skip
    code, data = hf_matrix(arch, hf_env_dir, tmp_path, HF_OLD, HF_NEW)
    assert code == 1 and data["verdict"] == "drift"
    assert data["varying"] == ["transformers"]
    assert data["versions"] == [f"transformers-{HF_OLD}", f"transformers-{HF_NEW}"]
    (pair,) = data["pairs"]
    assert pair["root_cause"] == root_cause
    assert pair["root_cause_detail"]["status"] == status
    # the root cause names the library code that set it and the release change behind it
    assert pair["root_cause_detail"]["library"] == {
        "name": "transformers", "function": function, "before": HF_OLD, "after": HF_NEW,
    }  # fmt: skip
    statuses = {t["name"]: t["status"] for t in pair["tensors"]}
    assert all(statuses[name] == want for name, want in changed.items())
    assert pair["environment"] == HF_ENVIRONMENT
    # the snapshots carry the column in their names, and diff DIR orders them the same way
    (folder,) = (tmp_path / "snapshots").iterdir()  # snapshots/<model>/
    names = sorted(p.name for p in folder.glob("*.json"))
    assert names == [f"transformers-{v}-torch-{data['columns'][0]['versions']['torch']}-seed0.json"
                     for v in (HF_OLD, HF_NEW)]  # fmt: skip
    again = run_cli("diff", str(folder), "--format", "json")
    assert again.returncode == 1
    again_data = json.loads(again.stdout)
    assert again_data["versions"] == data["versions"]
    assert again_data["pairs"][0]["root_cause"] == root_cause


@pytest.mark.parametrize(
    "arch", ["bert", pytest.param("distilbert", marks=pytest.mark.slow),
             pytest.param("opt", marks=pytest.mark.slow)]
)  # fmt: skip
def test_transformers_releases_that_do_not_drift_are_identical(hf_env_dir, tmp_path, arch):
    code, data = hf_matrix(arch, hf_env_dir, tmp_path, HF_OLD, HF_NEW)
    assert code == 0 and data["verdict"] == "identical"
    (pair,) = data["pairs"]
    assert pair["root_cause"] is None
    assert {t["status"] for t in pair["tensors"]} == {"identical"}
    assert pair["environment"] == HF_ENVIRONMENT


def test_checkpoint_loaded_model_across_transformers_releases(hf_env_dir, tmp_path):
    """from_pretrained on a checkpoint this test saves (under 4.57.6): 23 tensors loaded, 4
    initialized by transformers; across 4.57.6 → 5.0.0 no loaded tensor drifts (measured: no
    tensor does), and the one change, a draw 5.0.0 adds and throws away, is named with its
    library code and both versions."""
    old_python = next(hf_env_dir.glob(f"*transformers-{HF_OLD}")) / "bin" / "python"
    ckpt = tmp_path / "ckpt"
    code = f"import sys; sys.path.insert(0, {str(HF_MODELS.parent)!r}); import hf_tiny; "
    code += f"hf_tiny.saved_bert({str(ckpt)!r})"
    subprocess.run([str(old_python), "-c", code], check=True, capture_output=True)
    envs = [x for v in (HF_OLD, HF_NEW) for x in ("--env", f"transformers=={v}")]
    proc = run_cli(
        "matrix", f"{HF_MODELS}:classifier_from_checkpoint", "--arg", f"ckpt={str(ckpt)!r}",
        *envs, "--env-dir", str(hf_env_dir), "--format", "json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (pair,) = json.loads(proc.stdout)["pairs"]
    assert pair["verdict"] == "drift" and pair["counts"] == {"identical": 27}
    rc = pair["root_cause_detail"]
    assert rc["kind"] == "orphan-draw" and rc["status"] == "added"
    assert rc["library"] == {
        "name": "transformers", "function": "BertEmbeddings.__init__",
        "before": HF_OLD, "after": HF_NEW,
    }  # fmt: skip
    for snap_path in (tmp_path / "snapshots").glob("*/*.json"):
        tensors = {t["name"]: t for t in json.loads(snap_path.read_text())["tensors"]}
        loaded = [n for n, t in tensors.items() if t["origin"] == "loaded"]
        assert len(loaded) == 23 and all(t["loaded"]["file"].endswith("model.safetensors")
                                         for n, t in tensors.items() if n in loaded)  # fmt: skip
        head = tensors["classifier.weight"]
        assert head["origin"] == "library" and head["init"]["call"] == "normal_"
        assert head["library"]["name"] == "transformers"
