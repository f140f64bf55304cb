"""Tracer overhead in one process: median CPU time of a build untraced vs traced, per model.

``python benchmarks/trace_overhead.py [gpt2_small linear_many ...] [--runs N]`` prints one line
per model: untraced, traced, overhead, events and the cost per traced event.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models

from initaudit.trace import trace_build


def gpt2_deep_tiny():
    """GPT-2 with 192 narrow layers: thousands of traced ops under deep transformers stacks."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=192, n_embd=16, n_head=2, vocab_size=100, n_positions=16)
    return GPT2LMHeadModel(cfg)


def _time(fn) -> float:
    t0 = time.process_time()  # CPU time of this process: less sensitive to a busy machine
    fn()
    return time.process_time() - t0


def main() -> None:
    """Measure and print the tracer's overhead for each model named on the command line."""
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=["gpt2_small", "gpt2_deep_tiny", "linear_many"])
    p.add_argument("--runs", type=int, default=3)
    opts = p.parse_args()
    torch.set_num_threads(1)
    for name in opts.models:
        build = gpt2_deep_tiny if name == "gpt2_deep_tiny" else getattr(models, name)
        build()  # warm imports and caches
        plain, traced, events = [], [], 0
        for _ in range(opts.runs):
            torch.manual_seed(0)
            plain.append(_time(build))
            t0 = time.process_time()
            trace = trace_build(build, 0)
            traced.append(time.process_time() - t0)
            events = len(trace.events)
        up, tr = statistics.median(plain), statistics.median(traced)
        print(
            f"{name}: untraced {up:.3f} s, traced {tr:.3f} s, overhead {tr - up:+.3f} s, "
            f"{events} events, {(tr - up) / max(events, 1) * 1e6:.1f} us/event"
        )


if __name__ == "__main__":
    main()
