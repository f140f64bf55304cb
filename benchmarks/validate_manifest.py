"""What validating a manifest against the schema costs, next to parsing its JSON.

    python benchmarks/validate_manifest.py            # 4,000 tensors (2 events each)
    python benchmarks/validate_manifest.py --tensors 20000

The manifest is the committed mlp snapshot's tensors repeated under new names (events, init
arguments and statistics included), so it has the shape of a real 4,000-tensor model's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from initaudit import snapshot
from initaudit.snapshot import schema

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"


def best(fn, repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``fn()``, in CPU seconds (steadier on a shared machine)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=9)
    opts = parser.parse_args()
    m = json.loads(MLP.read_text())
    base = m["tensors"]
    m["tensors"] = [dict(base[i % len(base)], name=f"t{i}", order=i) for i in range(opts.tensors)]
    raw = snapshot.manifest_text(m).encode()
    doc = json.loads(raw)
    schema.validate_manifest(doc)  # compiles the checkers
    parse = best(lambda: json.loads(raw), opts.repeat)
    check = best(lambda: schema.validate_manifest(doc), opts.repeat)
    print(
        f"{opts.tensors:,} tensors, {len(raw) / 2**20:.1f} MiB: json.loads {parse * 1e3:.1f} ms, "
        f"validate {check * 1e3:.1f} ms ({check / parse:.0%} of parsing)"
    )


if __name__ == "__main__":
    main()
