"""Tracer overhead per ATen op, in process, against a bare forwarding TorchDispatchMode.

    python benchmarks/trace_overhead.py                      # linear_many and gpt2_small, 5 runs
    python benchmarks/trace_overhead.py linear_many --runs 9
    python benchmarks/trace_overhead.py --freeze --runs 5    # + whole-process freeze of 20,000 Linear
    PYTHONPATH=OLD python benchmarks/trace_overhead.py --freeze --code OLD   # another checkout's code

For each model it times, interleaved and in CPU time of this process (``time.process_time``,
less sensitive to a busy machine than wall time): the plain build, the build under a
``TorchDispatchMode`` that only forwards each op, and ``trace_build`` (the tracer, including
binding the events to the model's names afterwards). The per-op figures divide each overhead
over the plain build by the number of ATen ops the build dispatches; the target is a traced
overhead per op at most 2× the bare mode's. ``--freeze`` also times whole processes (start to
exit): ``initaudit freeze --digest-only`` of 20,000 × Linear(8, 8) against the by-hand
baseline of ``benchmarks/run.py`` (seed, build, ``torch.save``); the target is 1.4×.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models
import run as whole

import initaudit
from initaudit.trace import trace_build

#: Traced overhead per op at most this many times the bare mode's (issue 15).
TARGET_PER_OP = 2.0
TARGET_FREEZE = 1.4


class Bare(TorchDispatchMode):
    """Forward every op unchanged, counting them: the floor any dispatch-level tracer pays."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as InitTracer: no torch._dynamo import at the first op

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self.ops += 1
        return func(*args, **(kwargs or {}))


def _cpu(fn) -> tuple[float, object]:
    gc.collect()  # the previous run's garbage is not this run's cost
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def _bare(build):
    mode = Bare()
    with mode:
        build()
    return mode.ops


def in_process(name: str, runs: int) -> dict[str, float]:
    """Median CPU seconds of the plain, bare-mode and traced builds of one model."""
    build = getattr(models, name)
    build()  # warm imports and caches
    trace_build(build, 0)
    times: dict[str, list[float]] = {"plain": [], "bare": [], "traced": []}
    ops = events = 0
    for _ in range(runs):
        torch.manual_seed(0)
        t, out = _cpu(build)
        times["plain"].append(t)
        del out
        torch.manual_seed(0)
        t, ops = _cpu(lambda: _bare(build))
        times["bare"].append(t)
        t, trace = _cpu(lambda: trace_build(build, 0))
        times["traced"].append(t)
        events = len(trace.events)
        del trace
    med = {k: statistics.median(v) for k, v in times.items()}
    med["ops"], med["events"] = ops, events
    return med


def freeze_ratio(runs: int) -> tuple[float, float]:
    """Median wall seconds of by hand and of ``freeze --digest-only``, 20,000 × Linear(8, 8)."""
    spec = f"{Path(__file__).resolve().parent / 'models.py'}:linear_20k"
    with tempfile.TemporaryDirectory(prefix="initaudit-bench-") as tmp:
        res = whole.median(
            {
                "by hand": whole.py(
                    "torch.manual_seed(0); m = models.linear_20k(); "
                    f"torch.save(m.state_dict(), {str(Path(tmp) / 's.pt')!r})"
                ),
                "freeze": whole.cli(
                    "freeze", spec, "--out", str(Path(tmp) / "s.json"), "--force", "-q",
                    "--digest-only",
                ),
            },
            runs,
        )
    return res["by hand"][0], res["freeze"][0]


def main() -> None:
    """Measure and print the tracer's overhead per op, and optionally the freeze ratio."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="*", default=["linear_many", "gpt2_small"])
    p.add_argument("--runs", type=int, default=5, help="runs per variant (median); default 5")
    p.add_argument("--freeze", action="store_true", help="also the whole-process freeze ratio")
    p.add_argument(
        "--code",
        type=Path,
        help="the initaudit checkout the --freeze processes import (default: this one); for "
        "the in-process rows, put the same folder first on PYTHONPATH",
    )
    opts = p.parse_args()
    if opts.code is not None:
        whole.ROOT = opts.code.resolve()  # run.run puts ROOT on the children's PYTHONPATH
    torch.set_num_threads(1)
    print(f"median of {opts.runs} · CPU time of this process · torch {torch.__version__}")
    print(f"initaudit from {Path(initaudit.__file__).parent.parent}")
    print("| model | ops | plain | bare mode | traced | bare µs/op | traced µs/op | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name in opts.models:
        m = in_process(name, opts.runs)
        ops = max(int(m["ops"]), 1)
        bare = (m["bare"] - m["plain"]) / ops * 1e6
        traced = (m["traced"] - m["plain"]) / ops * 1e6
        ratio = traced / bare if bare > 0 else float("inf")
        print(
            f"| {name} | {ops} | {m['plain']:.3f} s | {m['bare']:.3f} s | {m['traced']:.3f} s "
            f"| {bare:.1f} | {traced:.1f} | {ratio:.2f}× (target ≤ {TARGET_PER_OP:.0f}×) |",
            flush=True,
        )
    if opts.freeze:
        hand, froze = freeze_ratio(opts.runs)
        print(
            f"\nfreeze --digest-only, 20,000 × Linear(8, 8), whole process: by hand {hand:.2f} s, "
            f"freeze {froze:.2f} s, {froze / hand:.2f}× (target ≤ {TARGET_FREEZE}×)"
        )


if __name__ == "__main__":
    main()
