"""Streamed digest vs raw: ``initaudit freeze --digest-only --stream`` against the same seeded
build in memory followed by sha256 of each tensor, whole processes, interleaved, medians.

    python benchmarks/stream_digest.py --runs 3                     # llama_half (0.54 B)
    python benchmarks/stream_digest.py --model llama --arg num_hidden_layers=2 --runs 3
    python benchmarks/stream_digest.py --code /path/to/other/checkout   # time another version

Raw hashes every distinct tensor of ``model.state_dict()`` once (tied weights once) and computes
no statistics; the streamed digest also computes statistics. Peak memory is ``ru_maxrss``.
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
MODELS = ROOT / "benchmarks" / "models.py"

RAW = """
import hashlib, sys, torch
sys.path.insert(0, {bench!r})
import models
kwargs = dict(a.split("=", 1) for a in {args!r})
torch.manual_seed(0)
model = getattr(models, {name!r})(**{{k: int(v) for k, v in kwargs.items()}})
seen, n = set(), 0
for t in model.state_dict().values():
    if t.data_ptr() in seen:
        continue
    seen.add(t.data_ptr())
    n += t.numel()
    hashlib.sha256(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()
print(n)
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run ``cmd`` to its end; return (wall seconds, CPU seconds, peak RSS bytes, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, out.decode()


def main() -> None:
    """Time raw and streamed digests side by side and print a table with the ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="llama_half", help="a function of benchmarks/models.py")
    ap.add_argument("--arg", action="append", default=[], help="KEY=INT passed to the model")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose initaudit to time")
    ap.add_argument("--no-raw", action="store_true", help="only the streamed digest")
    opts = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(opts.code.resolve()))
    raw_cmd = [sys.executable, "-c", RAW.format(bench=str(MODELS.parent), args=opts.arg,
                                                name=opts.model)]
    walls: dict[str, list[float]] = {"raw": [], "stream": []}
    cpus: dict[str, list[float]] = {"raw": [], "stream": []}
    peaks: dict[str, list[int]] = {"raw": [], "stream": []}
    numel = 0
    with tempfile.TemporaryDirectory(prefix="initaudit-stream-") as tmp:
        out = Path(tmp) / "s.json"
        stream_cmd = [sys.executable, "-m", "initaudit", "freeze", f"{MODELS}:{opts.model}",
                      "--digest-only", "--stream", "-q", "--force", "--out", str(out)]
        for a in opts.arg:
            stream_cmd += ["--arg", a]
        for i in range(opts.runs):
            for kind in ("stream",) if opts.no_raw else ("raw", "stream"):
                wall, cpu, peak, text = run(raw_cmd if kind == "raw" else stream_cmd, env)
                if kind == "raw":
                    numel = int(text.split()[-1])
                walls[kind].append(wall)
                cpus[kind].append(cpu)
                peaks[kind].append(peak)
                print(f"run {i + 1} {kind}: {wall:.1f} s, {cpu:.1f} s CPU, "
                      f"{peak / 2**30:.2f} GiB", flush=True)
        if not numel:
            import json

            numel = sum(t["stats"]["numel"] for t in json.loads(out.read_text())["tensors"])
    print(f"\n{opts.model} {' '.join(opts.arg)}: {numel / 1e6:,.0f} M parameters, "
          f"median of {opts.runs}, code {opts.code}")
    print("| run | wall | params/s | CPU (user + sys) | peak RSS |")
    print("|---|---|---|---|---|")
    for kind, ws in walls.items():
        if ws:
            w = statistics.median(ws)
            print(f"| {kind} | {w:.1f} s | {numel / w / 1e6:.1f} M/s | "
                  f"{statistics.median(cpus[kind]):.1f} s | {max(peaks[kind]) / 2**30:.2f} GiB |")
    if walls["raw"]:
        ratio = statistics.median(walls["raw"]) / statistics.median(walls["stream"])
        print(f"\nstreamed rate / raw rate: {ratio:.2f}× (target ≥ 0.9×)")


if __name__ == "__main__":
    main()
