"""Values a torch seed does not fix: the fresh-process rebuild and the ``nondeterministic`` finding.

:func:`rerun_fresh` rebuilds a target in a new Python process where only torch is seeded
(:mod:`initaudit.audit.rebuild` is that process) and returns its tensor hashes;
:func:`find_nondeterministic` compares them with the traced build and reads the RNGs the build
drew from (NumPy's, Python's, private torch generators).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from initaudit.audit.findings import Finding, brief
from initaudit.audit.rows import TensorRow
from initaudit.errors import TargetError, UsageError
from initaudit.target import Target


@dataclass
class RerunResult:
    """Hashes from a rebuild in a fresh process where only torch was seeded."""

    hashes: dict[str, str]
    command: list[str]


def find_nondeterministic(
    rows: list[TensorRow],
    manifest: dict[str, Any],
    rerun: RerunResult | None,
) -> list[Finding]:
    """``nondeterministic``: values from RNGs a torch seed does not fix, or that differ in a rebuild."""
    out: list[Finding] = []
    rng = manifest.get("rng") or {}
    uninit = {r.name for r in rows if r.origin == "uninitialized"}
    differing: list[str] = []
    missing: list[str] = []
    if rerun is not None:
        for r in rows:
            h = rerun.hashes.get(r.name)
            if h is None:
                missing.append(r.name)
            elif h != r.hash and r.name not in uninit:
                differing.append(r.name)
        primary = {r.name for r in rows} | {a for r in rows for a in r.aliases}
        missing += [n for n in rerun.hashes if n not in primary]
    sources = []
    if rng.get("drew_from_numpy"):
        sources.append("NumPy's global RNG (np.random.*)")
    if rng.get("drew_from_python_random"):
        sources.append("Python's global RNG (random.*)")
    if sources:
        src = " and ".join(sources)
        external = [
            r.name
            for r in rows
            if r.origin in ("user", "library") and r.init and r.init.startswith("external data")
        ]
        if rerun is not None:
            if differing or missing:
                names = differing + missing
                out.append(
                    Finding(
                        kind="nondeterministic",
                        severity="error",
                        tensors=names,
                        message=(
                            f"The build drew from {src}, which a torch seed does not fix: "
                            f"rebuilt in a fresh process with only torch seeded, "
                            f"{brief(names)} got different values."
                        ),
                        advice=_ND_ADVICE,
                        details={"sources": sources, "differing": differing, "missing": missing},
                    )
                )
                differing, missing = [], []
            else:
                out.append(
                    Finding(
                        kind="nondeterministic",
                        severity="info",
                        tensors=[],
                        message=(
                            f"The build drew from {src}, but no tensor value depends on it: "
                            "a fresh-process rebuild with only torch seeded gave bitwise "
                            "identical tensors (other behaviour may still depend on it)."
                        ),
                        advice="Seed it too, or move the draw out of model construction.",
                        details={"sources": sources},
                    )
                )
        else:
            out.append(
                Finding(
                    kind="nondeterministic",
                    severity="error",
                    tensors=external,
                    message=(
                        f"The build drew from {src}, which a torch seed does not fix; "
                        + (
                            f"values entered through {brief(external)}. "
                            if external
                            else "which tensors depend on it is unknown. "
                        )
                        + "Run without --no-rerun to name exactly the tensors that change."
                    ),
                    advice=_ND_ADVICE,
                    details={"sources": sources},
                )
            )
    private = [
        r.name for r in rows if any(e.get("rng") == "private" for e in _events_of(manifest, r.name))
    ]
    if private or rng.get("private_generators"):
        out.append(
            Finding(
                kind="nondeterministic",
                severity="error" if private else "info",
                tensors=private,
                message=(
                    f"{brief(private)} drew from a private torch.Generator: torch.manual_seed "
                    "does not set it, --seed does not change these values, and they repeat "
                    "only if that generator is seeded the same way every run."
                    if private
                    else "The build drew from a private torch.Generator, but those draws "
                    "reached no final tensor."
                ),
                advice=(
                    "Pass no generator (use the global RNG that torch.manual_seed sets), or seed "
                    "the generator from the same seed explicitly and document it."
                ),
            )
        )
    if differing or missing:
        names = differing + missing
        sites = sorted({_row(rows, n).source for n in differing if _row(rows, n)})
        out.append(
            Finding(
                kind="nondeterministic",
                severity="error",
                tensors=names,
                message=(
                    f"Rebuilt in a fresh process with only torch seeded, {brief(names)} "
                    "got different values"
                    + (f" (set by {brief(sites, 3)})" if sites else "")
                    + (f"; {brief(missing)} exist in only one of the two builds" if missing else "")
                    + ". Something other than torch's seeded RNG feeds them: time, os.urandom, "
                    "hash order of a set or dict, an unseeded RNG imported at module level, or "
                    "garbage memory."
                ),
                advice=_ND_ADVICE,
                details={"differing": differing, "missing": missing},
            )
        )
    return out


_ND_ADVICE = (
    "Draw every init from torch's global RNG (torch.randn / nn.init with no generator), or seed "
    "every RNG you use from the same seed before building the model; never use time, "
    "os.urandom or unseeded RNGs at construction."
)


def _events_of(manifest: dict[str, Any], name: str) -> list[dict[str, Any]]:
    for t in manifest["tensors"]:
        if t["name"] == name:
            return t.get("events") or []
    return []


def _row(rows: list[TensorRow], name: str) -> TensorRow | None:
    return next((r for r in rows if r.name == name), None)


def rerun_fresh(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    example_input: list[int] | None = None,
) -> RerunResult:
    """Rebuild the target in a fresh Python process where only torch is seeded; return hashes."""
    try:
        kwargs_text = repr(dict(target.kwargs))
        if ast.literal_eval(kwargs_text) != dict(target.kwargs):
            raise ValueError
    except (ValueError, SyntaxError):
        raise UsageError(
            "the fresh-process check needs keyword arguments that are Python literals",
            hint="pass --no-rerun to skip it",
        ) from None
    config = {
        "spec": target.spec,
        "kwargs": kwargs_text,
        "seed": seed,
        "device": device,
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "example_input": example_input,
    }
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[2])  # the folder holding initaudit/
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    with tempfile.TemporaryDirectory(prefix="initaudit-rerun-") as tmp:
        out = Path(tmp) / "hashes.json"
        cmd = [sys.executable, "-m", "initaudit.audit.rebuild", json.dumps(config), str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env)
        if proc.returncode != 0 or not out.is_file():
            raise TargetError(
                "the fresh-process rebuild (only torch seeded) failed: " + _rerun_failure(proc),
                hint="pass --no-rerun to skip that check",
            )
        hashes = json.loads(out.read_text(encoding="utf-8"))
    return RerunResult(hashes=hashes, command=cmd[:3])


def _rerun_failure(proc: subprocess.CompletedProcess[str]) -> str:
    """Why the fresh-process rebuild gave no hashes, in a few words."""
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    said = [ln.split("error:", 1)[1].strip() for ln in lines if ln.startswith("initaudit: error:")]
    if said:
        return said[-1]
    if proc.returncode < 0:
        return f"the process was killed by signal {-proc.returncode}"
    how = f"the process exited with code {proc.returncode} without writing its result"
    if lines:
        return f"{how}: {lines[-1]}"
    return f"{how} or any message (does the model call os._exit()?)"
