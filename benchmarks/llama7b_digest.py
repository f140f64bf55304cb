"""Freeze a Llama-2-7B-shaped model (transformers ``LlamaConfig()`` defaults, ~27 GB in float32)
in digest mode by streaming, and compare its throughput with an in-memory freeze of a smaller
Llama of the same architecture.

    python benchmarks/llama7b_digest.py                 # the full 7B shape (32 layers)
    python benchmarks/llama7b_digest.py --layers 2      # same widths, fewer layers (estimate)

Each freeze is a separate ``initaudit freeze`` process; peak memory is its ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = f"{ROOT / 'benchmarks' / 'models.py'}:llama"
SMALL = f"{ROOT / 'benchmarks' / 'models.py'}:llama_small"


def freeze(spec: str, out: Path, *extra: str) -> tuple[float, int, dict]:
    """Run one ``initaudit freeze``; return (wall seconds, peak RSS bytes, manifest)."""
    cmd = [sys.executable, "-m", "initaudit", "freeze", spec, "--out", str(out), "--force"]
    cmd += ["--digest-only", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss * 1024, json.loads(out.read_text())


def main() -> None:
    """Run the streamed freeze of the 7B shape and the in-memory freeze of the small config."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers")
    opts = ap.parse_args()
    extra = ["--arg", f"num_hidden_layers={opts.layers}"] if opts.layers else []
    with tempfile.TemporaryDirectory(prefix="initaudit-7b-") as tmp:
        t_small, m_small, man_small = freeze(SMALL, Path(tmp) / "small.json", "-q")
        t_big, m_big, man_big = freeze(SPEC, Path(tmp) / "big.json", "--stream", *extra)
    n_small = sum(t["stats"]["numel"] for t in man_small["tensors"])
    n_big = sum(t["stats"]["numel"] for t in man_big["tensors"])
    rows = [
        ("in-memory freeze --digest-only, small Llama", n_small, t_small, m_small),
        (f"streamed freeze --digest-only, Llama {opts.layers or 32} layers", n_big, t_big, m_big),
    ]
    print("| run | parameters | fp32 bytes | wall | params/s | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, n, t, m in rows:
        print(
            f"| {name} | {n / 1e6:,.0f} M | {n * 4 / 2**30:.1f} GiB | {t:.0f} s | "
            f"{n / t / 1e6:.1f} M/s | {m / 2**30:.2f} GiB |"
        )
    ratio = (n_big / t_big) / (n_small / t_small)
    print(f"\nthroughput ratio streamed / in-memory: {ratio:.2f} (target ≥ 0.5)")
    print(f"peak RSS of the streamed run: {m_big / 2**30:.2f} GiB (target ≤ 3 GiB)")


if __name__ == "__main__":
    main()
