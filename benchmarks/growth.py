"""Growth: freeze, diff and explicit cost against model size; flag steps that grow faster than linear.

Two sweeps of whole processes (``python -m initaudit …``), each timed start to exit with its CPU
time (``ru_utime + ru_stime`` of the child, from ``os.wait4``: steadier than wall time on a
shared machine) and wall time:

- (a) tensors: ``benchmarks/models.py:linear_tensors`` — N/2 × Linear(8, 8), N = 10 … 100,000
  tensors (288 bytes a tensor on average);
- (b) bytes: ``benchmarks/models.py:linear_bytes`` — 4 square Linear layers (8 tensors)
  totalling 1 MB … 4 GB.

For each point: ``freeze TARGET --out A.json`` (and a second, identical B.json, and C.json
built with ``INITAUDIT_BENCH_DRIFT=1``: the last Linear re-initialized), ``diff A B``
(identical), ``diff A C`` (drifted) and ``explicit TARGET --out F.py`` (capped by
``--explicit-timeout``). The interpreter-and-import baseline of each command (torch and
initaudit imported for freeze and explicit; ``initaudit --version`` for diff, which reads only
JSON and values-file headers) is subtracted, then each step is compared with the linear
extrapolation of the previous point: ``cost_prev × size / size_prev``. A ratio above 1.3× is
flagged.

    python benchmarks/growth.py                          # default: ≤ 10,000 tensors, ≤ 100 MB
    python benchmarks/growth.py --max-tensors 100000 --max-bytes 4e9 --runs 1   # every point
    python benchmarks/growth.py --sweep tensors --commands freeze,diff

Points above ``--digest-only-above`` bytes (default 2 GB) are frozen with ``--digest-only`` (a
4 GB model with its values file needs about twice its bytes in memory); diff then compares
manifests only, and the table says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "benchmarks" / "models.py"
TENSORS = [10, 100, 1_000, 10_000, 100_000]
BYTES = [10**6, 10**7, 10**8, 10**9, 4 * 10**9]
LIMIT = 1.3
#: Costs under this (seconds of CPU above the baseline) are within the baseline's own spread, so a
#: step from one is printed but not flagged.
NOISE = 0.2
_TORCH_BASE = "import torch, initaudit._cli, initaudit.freeze, initaudit.codegen, initaudit.render"


@dataclass
class Timing:
    """Medians of one command at one point (seconds); ``None`` when it timed out."""

    wall: float | None
    cpu: float | None
    walls: list[float] = field(default_factory=list)


def run(
    cmd: list[str], env_extra: dict[str, str] | None = None, timeout: float | None = None
) -> tuple[float, float] | None:
    """Run one process to exit; (wall s, CPU s of the child), or None past ``timeout``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="160", **(env_extra or {}))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = None if timeout is None else t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            os.killpg(proc.pid, 9)
            os.wait4(proc.pid, 0)
            return None
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if code not in (0, 1):
        raise SystemExit(f"growth: command failed ({code}): {' '.join(cmd)}\n{err}")
    return wall, usage.ru_utime + usage.ru_stime


def cli(*args: str) -> list[str]:
    """An ``initaudit`` command line."""
    return [sys.executable, "-m", "initaudit", *args]


def measure(
    cmd: list[str], runs: int, env: dict[str, str] | None = None, timeout: float | None = None
) -> Timing:
    """Median wall and CPU time of ``runs`` runs (one run only if the first timed out)."""
    walls, cpus = [], []
    for _ in range(runs):
        got = run(cmd, env, timeout)
        if got is None:
            return Timing(None, None)
        walls.append(got[0])
        cpus.append(got[1])
    return Timing(statistics.median(walls), statistics.median(cpus), walls)


def actual(fn: str, arg: str, value: int) -> tuple[int, int]:
    """(tensor count, bytes) of one benchmark model, counted without building its values."""
    code = (
        f"import sys, torch; sys.path.insert(0, {str(MODELS.parent)!r}); import models\n"
        f"with torch.device('meta'): m = models.{fn}({arg}={value})\n"
        "ts = list(m.state_dict().values())\n"
        "print(len(ts), sum(t.numel() * t.element_size() for t in ts))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, b = out.stdout.split()
    return int(n), int(b)


def point(
    fn: str,
    arg: str,
    value: int,
    commands: list[str],
    runs: int,
    tmp: Path,
    digest_only: bool,
    explicit_timeout: float,
    explicit: bool,
) -> dict[str, Timing]:
    """Time every command of one sweep point."""
    d = tmp / f"{fn}-{value}"
    d.mkdir()
    spec = f"{MODELS}:{fn}"
    common = [spec, "--arg", f"{arg}={value}", "-q"]
    extra = ["--digest-only"] if digest_only else []
    a, b, c = d / "A.json", d / "B.json", d / "C.json"
    out: dict[str, Timing] = {}
    if "freeze" in commands or "diff" in commands:
        # Runs alternate between A and B, so the last two leave both behind.
        walls, cpus = [], []
        for i in range(max(runs, 2)):
            got = run(cli("freeze", *common, *extra, "--force", "--out", str((a, b)[i % 2])))
            assert got is not None
            walls.append(got[0])
            cpus.append(got[1])
        out["freeze"] = Timing(statistics.median(walls), statistics.median(cpus), walls)
    if "diff" in commands:
        run(
            cli("freeze", *common, *extra, "--force", "--out", str(c)),
            {"INITAUDIT_BENCH_DRIFT": "1"},
        )
        out["diff identical"] = measure(cli("diff", str(a), str(b)), runs)
        out["diff drifted"] = measure(cli("diff", str(a), str(c)), runs)
    if "explicit" in commands and explicit:
        out["explicit"] = measure(
            cli("explicit", *common, "--out", str(d / "F.py")), runs, timeout=explicit_timeout
        )
    shutil.rmtree(d)
    return out


def fmt_s(x: float | None) -> str:
    """Seconds, or a dash."""
    return "—" if x is None else f"{x:.2f} s"


def sweep(
    name: str,
    fn: str,
    arg: str,
    values: list[int],
    opts: argparse.Namespace,
    base: dict[str, Timing],
    tmp: Path,
) -> list[str]:
    """Run one sweep; return its markdown table rows (and print them as they come)."""
    commands = opts.commands.split(",")
    prev: dict[str, tuple[int, float]] = {}
    rows: list[str] = []
    for value in values:
        n, nbytes = actual(fn, arg, value)
        size = n if name == "tensors" else nbytes
        digest = nbytes > opts.digest_only_above
        res = point(
            fn,
            arg,
            value,
            commands,
            opts.runs,
            tmp,
            digest,
            opts.explicit_timeout,
            nbytes <= opts.explicit_max_bytes,
        )
        label = f"{n:,} tensors, {nbytes / 1e6:,.1f} MB" + (" (digest-only)" if digest else "")
        for cmd, t in res.items():
            key = "diff" if cmd == "diff identical" else "torch"
            if t.cpu is None:
                row = f"| {label} | {cmd} | > {opts.explicit_timeout:.0f} s (timed out) | | | | |"
                prev.pop(cmd, None)
            else:
                cost = max(t.cpu - (base[key].cpu or 0.0), 1e-3)
                if cmd in prev:
                    psize, pcost = prev[cmd]
                    extrap = pcost * size / psize
                    ratio = cost / extrap
                    flag = " **> 1.3×**" if ratio > LIMIT else ""
                    if pcost < NOISE:
                        flag = " (previous below noise)"
                    tail = f"{extrap:.2f} s | {ratio:.2f}×{flag}"
                else:
                    tail = "— | —"
                row = f"| {label} | {cmd} | {fmt_s(t.wall)} | {fmt_s(t.cpu)} | {cost:.2f} s | {tail} |"
                prev[cmd] = (size, cost)
            rows.append(row)
            print(row, flush=True)
    return rows


HEADER = (
    "| point | command | wall (median) | CPU (median) | CPU − baseline | linear from previous | ratio |\n"
    "|---|---|---|---|---|---|---|"
)


def main() -> None:
    """Parse arguments, run the sweeps, print the tables."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per command (median); default 3")
    ap.add_argument("--sweep", default="tensors,bytes", help="tensors, bytes or both (default)")
    ap.add_argument("--commands", default="freeze,diff,explicit", help="default: all three")
    ap.add_argument("--max-tensors", type=float, default=10_000, help="default 10,000")
    ap.add_argument("--max-bytes", type=float, default=1e8, help="default 1e8 (100 MB)")
    ap.add_argument(
        "--digest-only-above", type=float, default=2e9, help="freeze --digest-only above (2e9)"
    )
    ap.add_argument(
        "--explicit-timeout", type=float, default=300.0, help="seconds per explicit run (300)"
    )
    ap.add_argument(
        "--explicit-max-bytes",
        type=float,
        default=1.1e9,
        help="skip explicit above this many bytes (1.1e9: it holds the model 3 times)",
    )
    opts = ap.parse_args()
    base = {
        "torch": measure([sys.executable, "-c", _TORCH_BASE], opts.runs),
        "diff": measure(cli("--version"), opts.runs),
    }
    print(
        f"baselines (CPU, median of {opts.runs}): import torch + initaudit {fmt_s(base['torch'].cpu)}"
        f" (wall {fmt_s(base['torch'].wall)}); initaudit --version {fmt_s(base['diff'].cpu)}"
        f" (wall {fmt_s(base['diff'].wall)})",
        flush=True,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="initaudit-growth-") as tmp:
        sweeps = opts.sweep.split(",")
        if "tensors" in sweeps:
            print("\n(a) tensor count: N/2 × Linear(8, 8)\n\n" + HEADER, flush=True)
            vals = [v for v in TENSORS if v <= opts.max_tensors]
            sweep("tensors", "linear_tensors", "tensors", vals, opts, base, Path(tmp))
        if "bytes" in sweeps:
            print("\n(b) bytes: 4 × Linear(w, w)\n\n" + HEADER, flush=True)
            vals = [v for v in BYTES if v <= opts.max_bytes]
            sweep("bytes", "linear_bytes", "nbytes", vals, opts, base, Path(tmp))
    print(f"\n{time.perf_counter() - t0:.0f} s in all; steps above {LIMIT}× are flagged")


if __name__ == "__main__":
    main()
