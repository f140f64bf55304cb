"""Check a model's initialization against its committed snapshot (the CI gate).

``check_snapshot`` diffs a freshly frozen, in-memory snapshot against the committed one: the one
given, or by default the newest snapshot of the same target, seed, device and dtype under
``snapshots/<slug>/`` (newest by torch version, then by modification time). With ``update`` the
fresh snapshot is written instead of failing, and a committed pair whose values file is broken
(structure, or its sha256, which ``update`` checks) is repaired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from initaudit.diff.compare import diff_snapshots
from initaudit.diff.report import DiffReport
from initaudit.errors import InitAuditError, SnapshotError
from initaudit.snapshot.read import Snapshot, check_values_file, file_sha256, read
from initaudit.snapshot.write import default_path, write


@dataclass
class CheckResult:
    """What a check found and did."""

    fresh: Snapshot
    against: Path | None
    report: DiffReport | None
    written: Path | None = None
    #: Why the committed pair was broken, when ``update`` rewrote it without diffing.
    repaired: str | None = None

    @property
    def drift(self) -> bool:
        """Whether the fresh build differs from the committed snapshot."""
        return self.report is not None and self.report.drift

    @property
    def exit_code(self) -> int:
        """1 on drift that was not accepted with ``update``, else 0."""
        return 1 if self.drift and self.written is None else 0


def _version_key(snap: Snapshot) -> Any:
    version = str(snap.environment.get("torch"))
    try:
        return (1, Version(version), "")
    except InvalidVersion:
        return (0, Version("0"), version)


def _matches(snap: Snapshot, fresh: Snapshot) -> bool:
    """Same target arguments (and example input), seed, device and default dtype."""
    env_a, env_b = snap.environment, fresh.environment
    return (
        snap.target.get("name") == fresh.target.get("name")
        and (snap.target.get("kwargs") or {}) == (fresh.target.get("kwargs") or {})
        and snap.target.get("example_input") == fresh.target.get("example_input")
        and snap.manifest.get("seed") == fresh.manifest.get("seed")
        and env_a.get("device") == env_b.get("device")
        and env_a.get("default_dtype") == env_b.get("default_dtype")
    )


def find_committed(fresh: Snapshot, snapshot_dir: Path = Path("snapshots")) -> Path | None:
    """The newest committed snapshot matching ``fresh`` under ``snapshot_dir/<slug>/``, if any."""
    folder = Path(snapshot_dir) / fresh.target["slug"]
    if not folder.is_dir():
        return None
    candidates = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        # Manifests only: the values file checked is the one of the snapshot picked.
        snap = read(path, within=folder, check_values=False)
        if _matches(snap, fresh):
            candidates.append((_version_key(snap), path.stat().st_mtime, str(path), path))
    if not candidates:
        return None
    return max(candidates)[3]


def _describe(fresh: Snapshot) -> str:
    env = fresh.environment
    return (
        f"{fresh.target.get('slug')} (seed {fresh.manifest.get('seed')}, {env.get('device')}, "
        f"{env.get('default_dtype')})"
    )


def check_snapshot(
    fresh: Snapshot,
    *,
    against: Path | None = None,
    snapshot_dir: Path = Path("snapshots"),
    update: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
    allow_renames: bool = False,
) -> CheckResult:
    """Diff a fresh in-memory snapshot against the committed one; with ``update``, write it."""
    snapshot_dir = Path(snapshot_dir)
    path = Path(against) if against is not None else find_committed(fresh, snapshot_dir)
    if path is None or (against is not None and update and not path.exists()):
        if not update:
            raise SnapshotError(
                f"no committed snapshot of {_describe(fresh)} under "
                f"{snapshot_dir / fresh.target['slug']}",
                hint="create one with --update (or initaudit freeze)",
            )
        out = path if path is not None else default_path(fresh.manifest, snapshot_dir)
        write(fresh, out, force=True)
        return CheckResult(fresh=fresh, against=None, report=None, written=out)
    committed = read(path, within=None if against is not None else path.parent, check_values=False)
    broken = _broken(committed, full=update)
    if broken is not None:
        if not update:
            raise SnapshotError(broken)
        out = path if against is not None else default_path(fresh.manifest, snapshot_dir)
        write(fresh, out, force=True)
        return CheckResult(fresh=fresh, against=path, report=None, written=out, repaired=broken)
    report = diff_snapshots(
        committed, fresh, atol=atol, rtol=rtol, allow_renames=allow_renames
    )
    result = CheckResult(fresh=fresh, against=path, report=report)
    if report.drift and update:
        out = path if against is not None else default_path(fresh.manifest, snapshot_dir)
        write(fresh, out, digest_only=not committed.has_values(), force=True)
        result.written = out
    return result


def _broken(committed: Snapshot, *, full: bool) -> str | None:
    """Why the committed values file cannot be relied on (None: it can): its structure, and
    with ``full`` (``--update``) also its sha256 against the manifest's record."""
    try:
        check_values_file(committed)
        recorded = (committed.manifest.get("values") or {}).get("sha256")
        if full and committed.values_path is not None and recorded:
            if file_sha256(committed.values_path) != recorded:
                return (
                    f"{committed.values_path} does not match the sha256 its manifest records "
                    "(the file was modified or corrupted)"
                )
    except SnapshotError as exc:
        return exc.message
    return None


# --------------------------------------------------------------------------- project config


@dataclass
class ModelCheck:
    """The check of one configured model: its result, or the error that stopped it."""

    model: Any  # config.ModelConfig
    result: CheckResult | None = None
    error: str | None = None

    @property
    def verdict(self) -> str:
        """``identical``, ``drift``, ``updated``, ``created`` or ``error``."""
        if self.error is not None or self.result is None:
            return "error"
        if self.result.report is None:
            return "created"
        if self.result.written is not None:
            return "updated"
        return "drift" if self.result.drift else "identical"

    @property
    def exit_code(self) -> int:
        """2 for an error, 1 for drift not accepted with ``update``, else 0."""
        if self.verdict == "error":
            return 2
        return self.result.exit_code if self.result is not None else 2


@dataclass
class ProjectCheck:
    """Every configured model's check, with one verdict and one exit code."""

    config: Any  # config.ProjectConfig
    models: list[ModelCheck]

    @property
    def exit_code(self) -> int:
        """2 if any model could not be checked, else 1 if any drifted, else 0."""
        return max((m.exit_code for m in self.models), default=0)

    @property
    def verdict(self) -> str:
        """``error``, ``drift`` or ``identical`` for the project as a whole."""
        return {2: "error", 1: "drift", 0: "identical"}[self.exit_code]


def check_project(
    config: Any,
    freeze_model: Any,
    *,
    update: bool = False,
    on_model: Any = None,
) -> ProjectCheck:
    """Check every model of a project configuration; one model's error does not stop the rest.

    ``freeze_model(model_config)`` builds one configured model and returns its fresh in-memory
    snapshot (the CLI passes one that shows progress); paths resolve from the config's folder.
    """
    snapshot_dir = config.snapshot_dir or config.root / "snapshots"
    out: list[ModelCheck] = []
    for model in config.models:
        if on_model is not None:
            on_model(model)
        entry = ModelCheck(model)
        try:
            fresh = freeze_model(model)
            entry.result = check_snapshot(
                fresh, snapshot_dir=snapshot_dir, update=update, atol=config.atol, rtol=config.rtol
            )
        except InitAuditError as exc:
            entry.error = str(exc)
        out.append(entry)
    return ProjectCheck(config, out)
