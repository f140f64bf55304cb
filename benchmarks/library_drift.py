"""Search for init drift between releases of a model library (transformers by default).

Every architecture in ``tests/models/hf_tiny.py`` (or ``--models FILE``) is frozen with seed 0
under each release, each release installed from PyPI into its own folder layered over the
running torch (``pip install --target``: ~250 MB a release, no second torch), then consecutive
releases are diffed with initaudit. For a drifting pair the table names the root-cause tensor,
its status, the function whose source line set it (read from that release's file) and whether
that architecture's ``_init_weights`` source changed between the two releases.

    python benchmarks/library_drift.py 4.46.3 4.57.6 5.0.0 5.24.0 --out benchmarks/library_drift.md
    python benchmarks/library_drift.py 1.0.9 1.0.20 1.0.31 --package timm --no-deps \\
        --models tests/models/timm_tiny.py   # in a venv with torch 2.14.1 + torchvision 0.29.1

The per-release folders are kept in ``--work`` (default ``/tmp/initaudit-library-drift``) and
reused; ``--json`` writes the raw results.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import inspect
import itertools
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- worker (per release)


def _init_weights_info(model: Any) -> dict[str, Any] | None:
    """Which class defines the model's ``_init_weights`` (or ``init_weights``) and a digest."""
    for attr in ("_init_weights", "init_weights"):
        for cls in type(model).__mro__:
            fn = cls.__dict__.get(attr)
            if fn is None or cls.__module__.startswith("torch."):
                continue
            try:
                src = inspect.getsource(fn)
                file = inspect.getsourcefile(fn) or "?"
            except (OSError, TypeError):
                src, file = "", "?"
            return {
                "function": f"{cls.__name__}.{attr}",
                "file": _rel(file),
                "sha256": hashlib.sha256(src.encode()).hexdigest()[:16],
                "source": src,
            }
    return None


def _rel(path: str) -> str:
    for entry in sys.path:
        if entry and path.startswith(os.path.abspath(entry) + os.sep):
            return os.path.relpath(path, entry)
    return path


def worker(models: Path, names: list[str], out: Path, package: str) -> None:
    """Freeze every architecture under the running release; write snapshots and ``info.json``."""
    from importlib import metadata

    from initaudit.freeze import freeze
    from initaudit.snapshot import write
    from initaudit.target import resolve

    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"package": package, "version": metadata.version(package), "models": {}}
    if (out / "info.json").exists():  # a run over some architectures keeps the others' results
        info["models"] = json.loads((out / "info.json").read_text(encoding="utf-8"))["models"]
    for name in names:
        t0 = time.perf_counter()
        try:
            target = resolve(f"{models}:{name}")
            snap, trace = freeze(target, 0)
            write(snap, out / f"{name}.json", force=True)
            info["models"][name] = {
                "tensors": len(snap.tensors),
                "init_weights": _init_weights_info(trace.model),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        except BaseException as exc:
            info["models"][name] = {
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                "traceback": traceback.format_exc()[-2000:],
            }
        print(f"{info['version']} {name}: {info['models'][name].get('error', 'ok')}", flush=True)
    (out / "info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------- driver


def install(package: str, version: str, work: Path, no_deps: bool = False) -> Path:
    """``pip install --target`` one release (with its dependencies except torch), once."""
    dest = work / f"{package}-{version}"
    if (dest / ".complete").exists():
        return dest
    tmp = work / f".tmp-{package}-{version}"
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-warn-script-location",
           "--target", str(tmp), f"{package}=={version}"]  # fmt: skip
    if no_deps:  # the running interpreter already holds them (timm: torchvision, hub, yaml)
        cmd.append("--no-deps")
    subprocess.run(cmd, check=True)
    for leaked in tmp.glob("torch*"):  # never a second torch: the running one is the baseline
        subprocess.run(["rm", "-rf", str(leaked)], check=True)
    (tmp / ".complete").write_text(version)
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    tmp.rename(dest)
    return dest


def run_release(
    package: str, version: str, models: Path, names: list[str], work: Path, no_deps: bool = False
) -> dict[str, Any]:
    site = install(package, version, work, no_deps)
    out = work / "frozen" / models.stem / f"{package}-{version}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    env.pop("PYTHONHOME", None)
    cmd = [sys.executable, __file__, "--worker", str(out), "--package", package,
           "--models", str(models), *(["--only", ",".join(names)] if names else [])]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    info = json.loads((out / "info.json").read_text())
    info["dir"] = str(out)
    info["site"] = str(site)
    return info


def enclosing_function(path: Path, line: int) -> str | None:
    """``Class.method`` (or ``function``) around ``line`` of a Python file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    best: tuple[int, str] | None = None

    def visit(node: ast.AST, prefix: str) -> None:
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                end = getattr(child, "end_lineno", child.lineno)
                if child.lineno <= line <= end:
                    if not isinstance(child, ast.ClassDef) and (
                        best is None or child.lineno >= best[0]
                    ):
                        best = (child.lineno, name)
                    visit(child, name + ".")

    visit(tree, "")
    return best[1] if best else None


def site_function(site: str | None, site_root: str) -> str | None:
    """The function a manifest's ``file:line`` site lies in, in the release that ran it."""
    if not site or ":" not in site:
        return None
    file, _, line = site.rpartition(":")
    path = Path(site_root) / file
    if not path.exists():
        path = ROOT / file
    fn = enclosing_function(path, int(line)) if line.isdigit() else None
    return f"{fn} ({file}:{line})" if fn else site


def compare(a: dict[str, Any], b: dict[str, Any], name: str) -> dict[str, Any]:
    """Diff one architecture between two releases."""
    from initaudit.diff import diff_snapshots, report_to_json
    from initaudit.snapshot import read

    ma, mb = a["models"].get(name, {}), b["models"].get(name, {})
    if "error" in ma or "error" in mb:
        return {"verdict": "error", "error": ma.get("error") or mb.get("error")}
    sa, sb = read(Path(a["dir"]) / f"{name}.json"), read(Path(b["dir"]) / f"{name}.json")
    data = report_to_json(diff_snapshots(sa, sb))
    names_a, names_b = {t["name"] for t in sa.tensors}, {t["name"] for t in sb.tensors}
    counts: dict[str, int] = {}
    for t in data.get("tensors", []):
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    row: dict[str, Any] = {"verdict": data["verdict"], "counts": counts,
                           "root_cause": data.get("root_cause")}  # fmt: skip
    iw_a, iw_b = ma.get("init_weights") or {}, mb.get("init_weights") or {}
    row["init_weights"] = iw_b.get("function") or iw_a.get("function")
    row["init_weights_changed"] = iw_a.get("sha256") != iw_b.get("sha256")
    rc = data.get("root_cause")
    if rc:
        ta = next((t for t in sa.tensors if t["name"] == rc), {})
        tb = next((t for t in sb.tensors if t["name"] == rc), {})
        row["status"] = next(
            (t["status"] for t in data.get("tensors", []) if t["name"] == rc), None
        )
        row["function_before"] = site_function(ta.get("site"), a["site"])
        row["function_after"] = site_function(tb.get("site"), b["site"])
        row["reason"] = (data.get("root_cause_detail") or {}).get("reason")
        row["recipe_before"] = (ta.get("init") or {}).get("text")
        row["recipe_after"] = (tb.get("init") or {}).get("text")
    changed = [t for t in data.get("tensors", []) if t["status"] not in ("identical", "stream-shift")]
    row["changed"] = [
        {
            "name": t["name"],
            "status": t["status"],
            "before": next((u.get("init") or {}).get("text") for u in sa.tensors
                           if u["name"] == t["name"]) if t["name"] in names_a else None,
            "after": next((u.get("init") or {}).get("text") for u in sb.tensors
                          if u["name"] == t["name"]) if t["name"] in names_b else None,
        }
        for t in changed[:8]
    ]  # fmt: skip
    row["renamed"] = sorted(
        {t["name"] for t in sa.tensors} ^ {t["name"] for t in sb.tensors}
    )[:6]
    return row


def cell(row: dict[str, Any]) -> str:
    """One markdown cell."""
    if row["verdict"] == "identical":
        return "identical"
    if row["verdict"] == "error":
        return f"error: {row['error'][:80]}"
    fn = row.get("function_after") or row.get("function_before") or "?"
    fn = fn.split(" (")[0]
    changed = ", `_init_weights` source changed" if row.get("init_weights_changed") else ""
    return f"**drift**: `{row.get('root_cause')}` {row.get('status') or ''} · `{fn}`{changed}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("versions", nargs="*", help="releases in order, e.g. 4.46.3 4.57.6 5.0.0")
    p.add_argument("--package", default="transformers")
    p.add_argument("--models", type=Path, default=ROOT / "tests" / "models" / "hf_tiny.py")
    p.add_argument("--only", default="", help="comma-separated architectures (default: all)")
    p.add_argument("--work", type=Path, default=Path("/tmp/initaudit-library-drift"))
    p.add_argument("--out", type=Path, help="write the markdown table here")
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--no-deps", action="store_true",
                   help="install the releases without dependencies (the interpreter has them)")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    models = ns.models.resolve()
    if ns.only:
        names = ns.only.split(",")
    else:
        spec = importlib.util.spec_from_file_location("_models", models)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        names = list(mod.ARCHITECTURES)
    if ns.worker:
        worker(models, names, ns.worker, ns.package)
        return 0
    if len(ns.versions) < 2:
        p.error("give at least two releases")
    ns.work.mkdir(parents=True, exist_ok=True)
    import torch

    releases = [
        run_release(ns.package, v, models, names, ns.work, ns.no_deps) for v in ns.versions
    ]
    steps = [f"{a['version']} → {b['version']}" for a, b in itertools.pairwise(releases)]
    rows = {n: [compare(a, b, n) for a, b in itertools.pairwise(releases)] for n in names}
    lines = [
        f"{ns.package} releases under torch {torch.__version__}, seed 0, "
        f"`{models.relative_to(ROOT) if models.is_relative_to(ROOT) else models}`:",
        "",
        "| architecture | " + " | ".join(steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(cell(r) for r in rows[n]) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if ns.out:
        ns.out.write_text(table, encoding="utf-8")
    if ns.json:
        ns.json.write_text(
            json.dumps({"steps": steps, "rows": rows, "releases": [
                {k: v for k, v in r.items() if k != "models"} | {"models": {
                    m: {k: v for k, v in i.items() if k != "traceback"}
                    for m, i in r["models"].items()}} for r in releases]}, indent=1),
            encoding="utf-8",
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
