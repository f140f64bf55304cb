"""Benchmark initaudit against what a user would do by hand; print a table of medians.

Every figure is a whole process (``python -c …`` or ``python -m initaudit …``) timed from start
to exit, with its peak resident memory (``ru_maxrss`` of that child, from ``os.wait4``). Runs
are interleaved (baseline, then each contender, repeated), so a ratio compares runs made side
by side under the same load.

    python benchmarks/run.py                 # all models, 3 runs each
    python benchmarks/run.py --runs 5 --models a,b
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
MODELS = {
    "a": ("6 × Linear(4096, 4096)", "linear_big"),
    "b": ("2000 × Linear(8, 8)", "linear_many"),
    "c": ("GPT-2 small (transformers)", "gpt2_small"),
}
#: What the interpreter baseline imports besides torch and initaudit: the libraries the model's
#: own code loads, so "RSS above interpreter" counts the model and its construction alone.
MODEL_IMPORTS = {"c": "import transformers.models.gpt2.modeling_gpt2; "}
_IMPORT = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import torch, models; "


def run(cmd: list[str], extra_env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run one process; return (wall seconds, peak RSS in bytes)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", **(extra_env or {}))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss * 1024


def py(code: str) -> list[str]:
    """A ``python -c`` command with the benchmark models importable."""
    return [sys.executable, "-c", _IMPORT + code]


def cli(*args: str) -> list[str]:
    """An ``initaudit`` command."""
    return [sys.executable, "-m", "initaudit", *args]


def median(cmds: dict[str, list[str]], runs: int) -> dict[str, tuple[float, int]]:
    """Run each command ``runs`` times, interleaved; median wall time and median peak RSS."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, list[int]] = {k: [] for k in cmds}
    for _ in range(runs):
        for key, cmd in cmds.items():
            t, m = run(cmd)
            times[key].append(t)
            rss[key].append(m)
    return {k: (statistics.median(times[k]), int(statistics.median(rss[k]))) for k in cmds}


def model_bytes(fn: str) -> int:
    """Bytes of a model's parameters and buffers (counted once per storage)."""
    out = subprocess.run(
        py(
            f"m = models.{fn}(); seen = {{}}\n"
            "for t in list(m.parameters()) + list(m.buffers()):\n"
            "    seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()\n"
            "print(sum(seen.values()))"
        ),
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    return int(out.stdout.strip().splitlines()[-1])


def bench_model(
    key: str, runs: int, tmp: Path, with_diff: bool, diff_only: bool = False
) -> list[tuple[str, ...]]:
    """The rows for one model."""
    label, fn = MODELS[key]
    spec = f"{ROOT / 'benchmarks' / 'models.py'}:{fn}"
    d = tmp / key
    d.mkdir(exist_ok=True)
    pt0, pt1 = d / "s0.pt", d / "s1.pt"
    snap0, snap0b, snap1 = d / "s0.json", d / "s0b.json", d / "s1.json"
    cmds = {
        "by hand": py(
            f"torch.manual_seed(0); m = models.{fn}(); torch.save(m.state_dict(), {str(pt0)!r})"
        ),
        "freeze": cli("freeze", spec, "--out", str(snap0), "--force", "-q"),
        "freeze --digest-only": cli(
            "freeze", spec, "--out", str(d / "dig.json"), "--force", "-q", "--digest-only"
        ),
        "freeze --digest-only --stream": cli(
            "freeze",
            spec,
            "--out",
            str(d / "str.json"),
            "--force",
            "-q",
            "--digest-only",
            "--stream",
        ),
        "build (no tracing)": py(f"torch.manual_seed(0); m = models.{fn}()"),
        "build (traced)": py(
            f"from initaudit.trace import trace_build; t = trace_build(models.{fn}, 0)"
        ),
        "interpreter": py(
            MODEL_IMPORTS.get(key, "")
            + "import initaudit.snapshot, initaudit.trace, initaudit._cli"
        ),
    }
    if diff_only:
        cmds = {"by hand": cmds["by hand"], "freeze": cmds["freeze"]}
    res = median(cmds, 1 if diff_only else runs)
    nbytes = model_bytes(fn)
    base_t = res["by hand"][0]
    interp_m = res.get("interpreter", (0, 0))[1]
    rows = [("", f"({key}) {label}", f"{nbytes / 2**20:.0f} MiB of tensors", "", "", "")]
    if diff_only:
        res = {}
    for name, (t, m) in res.items():
        if name == "interpreter":
            continue
        above = (m - interp_m) / nbytes if nbytes else 0.0
        ratio = f"{t / base_t:.2f}×" if name != "by hand" else "1.00×"
        if name.startswith("build"):
            ratio = f"{t / res['build (no tracing)'][0]:.2f}× untraced"
        rows.append((key, name, f"{t:.2f} s", ratio, f"{m / 2**20:.0f} MiB", f"{above:.2f}×"))
    if not diff_only:
        tr = res["build (traced)"][0] - res["build (no tracing)"][0]
        rows.append((key, "tracing overhead (traced − untraced)", f"{tr:+.2f} s", "", "", ""))
    if with_diff:
        # Snapshots to diff: two identical (built twice) and two drifted (the last layer
        # re-initialized differently under the same seed: what a code change does).
        drift = {"INITAUDIT_BENCH_DRIFT": "1"}
        run(cli("freeze", spec, "--out", str(snap0b), "--force", "-q"))
        run(cli("freeze", spec, "--out", str(snap1), "--force", "-q"), drift)
        run(
            py(
                f"torch.manual_seed(0); m = models.{fn}(); torch.save(m.state_dict(), {str(pt1)!r})"
            ),
            drift,
        )
        by_hand = (
            "a = torch.load({!r}); b = torch.load({!r}); "
            "print(all(torch.equal(a[k], b[k]) for k in a))"
        )
        dres = median(
            {
                "diff by hand, identical": py(by_hand.format(str(pt0), str(pt0))),
                "initaudit diff, identical": cli("diff", str(snap0), str(snap0b)),
                "diff by hand, drifted": py(by_hand.format(str(pt0), str(pt1))),
                "initaudit diff, drifted": cli("diff", str(snap0), str(snap1)),
            },
            runs,
        )
        for kind in ("identical", "drifted"):
            bt, bm = dres[f"diff by hand, {kind}"]
            it, im = dres[f"initaudit diff, {kind}"]
            rows.append(
                (key, f"diff by hand, {kind}", f"{bt:.2f} s", "1.00×", f"{bm / 2**20:.0f} MiB", "")
            )
            rows.append(
                (
                    key,
                    f"initaudit diff, {kind}",
                    f"{it:.2f} s",
                    f"{it / bt:.2f}×",
                    f"{im / 2**20:.0f} MiB",
                    "",
                )
            )
    return rows


def main() -> None:
    """Parse arguments, run the benchmarks, print the table."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per command (median); default 3")
    ap.add_argument("--models", default="a,b,c", help="which of a,b,c; default all")
    ap.add_argument("--no-diff", action="store_true", help="skip the diff benchmarks")
    ap.add_argument("--diff-only", action="store_true", help="only the diff benchmarks")
    opts = ap.parse_args()
    has_diff = (ROOT / "initaudit" / "diff.py").exists() and not opts.no_diff
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="initaudit-bench-") as tmp:
        for key in opts.models.split(","):
            rows += bench_model(key.strip(), opts.runs, Path(tmp), has_diff, opts.diff_only)
            print(f"… ({key}) done", file=sys.stderr, flush=True)
    header = (
        "",
        "command",
        "wall (median)",
        "vs by hand",
        "peak RSS",
        "RSS above interpreter / model bytes",
    )
    print(f"median of {opts.runs} runs · {os.cpu_count()} CPUs · python {sys.version.split()[0]}")
    print("| " + " | ".join(header[1:]) + " |")
    print("|" + "---|" * (len(header) - 1))
    for row in rows:
        if row[0] == "":
            print(f"| **{row[1]}** ({row[2]}) | | | | |")
        else:
            print("| " + " | ".join(row[1:]) + " |")
    if not has_diff:
        print("\n(diff not benchmarked: initaudit/diff.py is not there yet, or --no-diff)")


if __name__ == "__main__":
    main()
