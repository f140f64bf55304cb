"""The audit report, and :func:`audit`: every finding on a traced build, in one report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from initaudit.audit.findings import (
    KINDS,
    Finding,
    LazyModule,
    find_kept_default,
    find_lazy,
    find_loaded,
    find_overwritten,
    find_suspicious,
    find_tied,
    find_uninitialized,
)
from initaudit.audit.nondeterminism import RerunResult, find_nondeterministic
from initaudit.audit.rows import TensorRow, tensor_row
from initaudit.snapshot.read import Snapshot
from initaudit.trace.tracer import Trace


@dataclass
class AuditReport:
    """The result of an audit: per-tensor rows in RNG order and the findings."""

    target: dict[str, Any]
    seed: int
    tensors: list[TensorRow]
    findings: list[Finding]
    require_explicit: bool = False
    example_input: list[int] | None = None
    rerun: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    #: The audited snapshot (its values, when it holds them, feed the HTML report's plots).
    snapshot: Snapshot | None = field(default=None, repr=False, compare=False)

    @property
    def errors(self) -> list[Finding]:
        """The findings that fail the audit."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        """0 when no finding is an error, 1 otherwise."""
        return 1 if self.errors else 0

    def by_kind(self, kind: str) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]

    def row(self, name: str) -> TensorRow:
        """The row of a tensor, by its primary name or one of its aliases."""
        for r in self.tensors:
            if r.name == name or name in r.aliases:
                return r
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The whole report as a JSON-compatible dict."""
        return {
            "target": self.target,
            "seed": self.seed,
            "require_explicit": self.require_explicit,
            "example_input": self.example_input,
            "rerun": self.rerun,
            "environment": self.environment,
            "tensors": [r.to_json() for r in self.tensors],
            "findings": [f.to_json() for f in self.findings],
            "summary": {
                "tensors": len(self.tensors),
                "errors": len(self.errors),
                "info": len(self.findings) - len(self.errors),
                "exit_code": self.exit_code,
            },
        }


def audit(
    snapshot: Snapshot | dict[str, Any],
    trace: Trace | None = None,
    *,
    require_explicit: bool = False,
    rerun: RerunResult | None = None,
    lazy: list[LazyModule] | None = None,
    example_input: list[int] | None = None,
) -> AuditReport:
    """Audit a traced build (a snapshot with events, and its trace if available)."""
    manifest = snapshot.manifest if isinstance(snapshot, Snapshot) else snapshot
    rows = [tensor_row(e) for e in manifest["tensors"]]
    differing = set()
    if rerun is not None:
        differing = {r.name for r in rows if rerun.hashes.get(r.name, r.hash) != r.hash}
    findings: list[Finding] = []
    findings += find_lazy(lazy or [])
    findings += find_uninitialized(rows, differing)
    findings += find_nondeterministic(rows, manifest, rerun)
    findings += find_suspicious(rows)
    findings += find_kept_default(rows, require_explicit)
    findings += find_overwritten(rows, manifest)
    findings += find_tied(rows, trace)
    findings += find_loaded(rows)
    findings.sort(key=lambda f: (f.severity != "error", KINDS.index(f.kind)))
    rerun_info: dict[str, Any] = {"ran": rerun is not None}
    if rerun is not None:
        rerun_info["differing"] = sorted(differing)
        rerun_info["compared"] = sum(1 for r in rows if r.name in rerun.hashes)
    env = manifest.get("provenance") or {}
    return AuditReport(
        target=manifest.get("target") or {},
        seed=manifest.get("seed", 0),
        tensors=rows,
        findings=findings,
        require_explicit=require_explicit,
        example_input=example_input,
        rerun=rerun_info,
        environment={k: env.get(k) for k in ("torch", "device", "default_dtype", "cpu_capability")},
        snapshot=snapshot if isinstance(snapshot, Snapshot) else None,
    )
