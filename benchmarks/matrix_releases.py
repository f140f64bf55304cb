"""Run ``initaudit matrix`` over real torch releases and write the result tables as markdown.

Each release gets its own cached environment (the first run installs it: older releases come
from PyPI as multi-GB CUDA builds unless pip is pointed at a CPU index, so the version list is
an argument, not a default). The markdown (per model: verdict, each upgrade step's root cause,
the tensor-by-version table, timings and the machine) goes to ``--out`` for the README.

    python benchmarks/matrix_releases.py 2.13.0 2.14.1
    python benchmarks/matrix_releases.py 2.12.1 2.13.0 2.14.1 --model examples/mlp.py \\
        --model examples/highway.py --jobs 2 --out benchmarks/matrix_releases.md --readme
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from initaudit import provenance  # noqa: E402
from initaudit.envs import environments  # noqa: E402
from initaudit.envs.matrix import run_matrix  # noqa: E402
from initaudit.render import matrix as render_matrix  # noqa: E402
from initaudit.snapshot import atomic_write  # noqa: E402

README_START = "<!-- matrix-releases: written by benchmarks/matrix_releases.py --readme -->"
README_END = "<!-- /matrix-releases -->"


def _cell(pair: Any) -> str:
    """One upgrade step of one model: identical, or the drift with its root cause."""
    data = pair.data
    counts = data.get("counts", {})
    if data.get("verdict") == "identical":
        return "identical"
    cause = data.get("root_cause")
    detail = data.get("root_cause_detail") or {}
    head = f"**drift**: `{cause}` {detail.get('status', '')} (root cause)" if cause else "**drift**"
    others = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n)
    return f"{head}; {others}"


def summary_table(results: list[tuple[str, Any]]) -> str:
    """A model-by-upgrade-step markdown table of verdicts and root causes."""
    steps = [f"{p.before} → {p.after}" for p in results[0][1].pairs]
    lines = [
        "| model | " + " | ".join(steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for model, result in results:
        n = len(result.snapshots[0].tensors)
        cells = [_cell(p) for p in result.pairs]
        lines.append(f"| `{model}` ({n} tensors) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_readme_table(readme: Path, table: str) -> None:
    """Replace the text between the README's matrix markers with ``table``."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: markers {README_START!r} … {README_END!r} not found")
    new = text[: start + len(README_START)] + "\n" + table + text[end:]
    atomic_write(readme, lambda tmp: tmp.write_text(new, encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Run the matrix for each model and write the markdown report; exit 1 if any drift."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("versions", nargs="+", help="torch versions, oldest first (e.g. 2.13.0 2.14.1)")
    ap.add_argument("--model", action="append", help="target (repeatable; default highway, mlp)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--env-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "matrix_releases.md")
    ap.add_argument(
        "--readme",
        type=Path,
        nargs="?",
        const=ROOT / "README.md",
        default=None,
        help="also write the summary table into this README (default README.md) between "
        f"the markers {README_START!r} and {README_END!r}",
    )
    opts = ap.parse_args(argv)
    models = opts.model or ["examples/highway.py", "examples/mlp.py"]
    env_dir = opts.env_dir or environments.default_env_dir()

    sections = []
    summary: list[tuple[str, Any]] = []
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
            summary.append((model, result))
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
    if opts.readme is not None:
        write_readme_table(opts.readme, summary_table(summary))
        print(f"wrote the summary table into {opts.readme}", file=sys.stderr)
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
