"""Freeze a Llama-2-7B-shaped model (transformers ``LlamaConfig()`` defaults, ~27 GB in float32)
in digest mode by streaming, and compare its throughput with an in-memory freeze of a smaller
Llama of the same architecture.

    python benchmarks/llama7b_digest.py                 # the full 7B shape (32 layers)
    python benchmarks/llama7b_digest.py --layers 2      # same widths, fewer layers (estimate)
    python benchmarks/llama7b_digest.py --model llama70b --no-small   # the Llama-2-70B shape

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
MODELS = ROOT / "benchmarks" / "models.py"
SMALL = f"{ROOT / 'benchmarks' / 'models.py'}:llama_small"


def freeze(spec: str, out: Path, *extra: str) -> tuple[float, float, int, dict]:
    """Run one ``initaudit freeze``; return (wall seconds, CPU seconds, peak RSS bytes,
    manifest)."""
    cmd = [sys.executable, "-m", "initaudit", "freeze", spec, "--out", str(out), "--force"]
    cmd += ["--digest-only", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss * 1024, json.loads(out.read_text())


def main() -> None:
    """Run the streamed freeze of the 7B shape and the in-memory freeze of the small config."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers")
    ap.add_argument("--model", default="llama", help="llama (7B shape) or llama70b")
    ap.add_argument("--no-small", action="store_true", help="skip the in-memory small run")
    opts = ap.parse_args()
    extra = ["--arg", f"num_hidden_layers={opts.layers}"] if opts.layers else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="initaudit-7b-") as tmp:
        if not opts.no_small:
            *got, man = freeze(SMALL, Path(tmp) / "small.json", "-q")
            rows.append(("in-memory freeze --digest-only, small Llama", man, *got))
        *got, man = freeze(f"{MODELS}:{opts.model}", Path(tmp) / "big.json", "--stream", *extra)
        layers = f", {opts.layers} layers" if opts.layers else ""
        rows.append((f"streamed freeze --digest-only, {opts.model}{layers}", man, *got))
    print("| run | parameters | fp32 bytes | wall | params/s | CPU (user + sys) | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for name, man, t, cpu, m in rows:
        n = sum(e["stats"]["numel"] for e in man["tensors"])
        print(
            f"| {name} | {n / 1e6:,.0f} M | {n * 4 / 2**30:.1f} GiB | {t:.0f} s | "
            f"{n / t / 1e6:.1f} M/s | {cpu:.0f} s | {m / 2**30:.2f} GiB |"
        )
    print(f"\npeak RSS of the streamed run: {rows[-1][4] / 2**30:.2f} GiB (target ≤ 3 GiB)")


if __name__ == "__main__":
    main()
