"""Run ``initaudit matrix`` over real torch releases and write the result tables as markdown.

Each release gets its own cached environment (the first run installs it: older releases come
from PyPI as multi-GB CUDA builds unless pip is pointed at a CPU index, so the version list is
an argument, not a default). The markdown (per model: verdict, each upgrade step's root cause,
the tensor-by-version table, timings and the machine) goes to ``--out`` for the README.

    python benchmarks/matrix_releases.py 2.13.0 2.14.1
    python benchmarks/matrix_releases.py 2.12.1 2.13.0 2.14.1 --model examples/mlp.py \\
        --model examples/highway.py --jobs 2 --out benchmarks/matrix_releases.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from initaudit import environments, provenance, render_matrix  # noqa: E402
from initaudit.matrix import run_matrix  # noqa: E402
from initaudit.snapshot import atomic_write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the matrix for each model and write the markdown report; exit 1 if any drift."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("versions", nargs="+", help="torch versions, oldest first (e.g. 2.13.0 2.14.1)")
    ap.add_argument("--model", action="append", help="target (repeatable; default highway, mlp)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--env-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "matrix_releases.md")
    opts = ap.parse_args(argv)
    models = opts.model or ["examples/highway.py", "examples/mlp.py"]
    env_dir = opts.env_dir or environments.default_env_dir()

    sections = []
    drift = False
    for model in models:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="initaudit-bench-") as snaps:
            result = run_matrix(
                str(ROOT / model) if (ROOT / model).exists() else model,
                opts.versions,
                jobs=opts.jobs,
                env_dir=env_dir,
                snapshot_dir=Path(snaps),
                log=lambda m: print(m, file=sys.stderr),
            )
            wall = time.perf_counter() - t0
            drift |= result.drift
            built = [e["torch"] for e in result.environments if not e["reused"]]
            md = render_matrix.matrix_markdown(result)
        timing = (
            f"_{wall:.0f} s wall for {len(opts.versions)} versions with --jobs {opts.jobs}; "
            + (
                f"environments built in this run: {', '.join(built)}_"
                if built
                else "all environments reused_"
            )
        )
        sections.append(f"#### `{model}`\n\n{md}\n{timing}\n")
        print(
            f"{model}: {'drift' if result.drift else 'identical'} ({wall:.0f} s)", file=sys.stderr
        )

    header = (
        f"Measured {dt.date.today().isoformat()} on {provenance.cpu_model()} "
        f"(CPU capability {provenance.cpu_capability()}), Python {platform.python_version()}, "
        f"command: `python benchmarks/matrix_releases.py {' '.join(argv or sys.argv[1:])}`\n\n"
    )
    text = header + "\n".join(sections)
    atomic_write(opts.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {opts.out}", file=sys.stderr)
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
