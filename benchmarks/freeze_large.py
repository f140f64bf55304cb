"""Freeze vs by hand on large real models: whole processes, interleaved, medians of ``--runs``.

    python benchmarks/freeze_large.py --runs 3                         # every model below
    python benchmarks/freeze_large.py --models vgg16,gpt2_small --runs 3

By hand is ``torch.manual_seed(0)``, build, ``torch.save(model.state_dict(), FILE)``; freeze is
``initaudit freeze SPEC --out FILE.json`` (values file written, fsynced, hashed). The torchvision
models need an environment with torchvision (torch 2.14.1 + torchvision 0.29.1 here); models
whose library does not import are skipped with a note. Peak memory is ``ru_maxrss``; CPU is the
child's user + system seconds (a figure contention on a shared machine does not inflate).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

#: name -> (initaudit target spec, Python expression building the model)
MODELS = {
    "vit_h_14": ("torchvision.models:vit_h_14", "__import__('torchvision').models.vit_h_14()"),
    "regnet_y_128gf": (
        "torchvision.models:regnet_y_128gf",
        "__import__('torchvision').models.regnet_y_128gf()",
    ),
    "vgg16": ("torchvision.models:vgg16", "__import__('torchvision').models.vgg16()"),
    "resnet50": ("torchvision.models:resnet50", "__import__('torchvision').models.resnet50()"),
    "gpt2_small": (f"{BENCH / 'models.py'}:gpt2_small", "__import__('models').gpt2_small()"),
}

BY_HAND = """
import sys, torch
sys.path.insert(0, {bench!r})
torch.manual_seed(0)
model = {expr}
torch.save(model.state_dict(), {out!r})
"""


def run(cmd: list[str], code: Path = ROOT) -> tuple[float, float, int]:
    """Run ``cmd`` to its end; return (wall seconds, CPU seconds, peak RSS bytes)."""
    env = dict(os.environ, PYTHONPATH=str(code))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"failed: {' '.join(cmd)}\n{err.decode()[-1500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def importable(module: str) -> bool:
    """Whether ``module`` imports in this interpreter (a separate process)."""
    probe = [sys.executable, "-c", f"import {module}"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def main() -> None:
    """Time by hand and freeze side by side for each model; print a table with the ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated names")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--code", type=Path, action="append", default=[],
                    help="also time the freeze of this other checkout (e.g. main), interleaved")
    opts = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="initaudit-large-", dir=os.environ.get("TMPDIR")) as tmp:
        for name in opts.models.split(","):
            spec, expr = MODELS[name]
            lib = "transformers" if name == "gpt2_small" else "torchvision"
            if not importable(lib):
                print(f"{name}: skipped ({lib} does not import with {sys.executable})")
                continue
            hand = [sys.executable, "-c",
                    BY_HAND.format(bench=str(BENCH), expr=expr, out=f"{tmp}/{name}.pt")]
            frz = [sys.executable, "-m", "initaudit", "freeze", spec, "-q", "--force",
                   "--out", f"{tmp}/{name}.json"]
            kinds = [("by hand", hand, ROOT), ("freeze", frz, ROOT)]
            kinds += [(f"freeze ({c})", frz, c.resolve()) for c in opts.code]
            got: dict[str, list[tuple[float, float, int]]] = {k: [] for k, _, _ in kinds}
            for i in range(opts.runs):
                for kind, cmd, code in kinds:
                    got[kind].append(run(cmd, code))
                    w, c, m = got[kind][-1]
                    print(f"{name} run {i + 1} {kind}: {w:.1f} s wall, {c:.1f} s CPU, "
                          f"{m / 2**30:.2f} GiB", flush=True)
                    for f in Path(tmp).iterdir():
                        f.unlink()  # no page-cache or disk carry-over between runs
            rows.append((name, got))
    print(f"\nmedians of {opts.runs}, interleaved")
    print("| model | command | wall | vs by hand | CPU (user + sys) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, got in rows:
        base = statistics.median(x[0] for x in got["by hand"])
        for kind, v in got.items():
            wall = statistics.median(x[0] for x in v)
            cpu = statistics.median(x[1] for x in v)
            print(f"| {name} | {kind} | {wall:.1f} s | **{wall / base:.2f}×** | {cpu:.1f} s | "
                  f"{max(x[2] for x in v) / 2**30:.2f} GiB |")


if __name__ == "__main__":
    main()
