"""Check a model's initialization against its committed snapshot (the CI gate).

``check_snapshot`` diffs a freshly frozen, in-memory snapshot against the committed one: the one
given, or by default the newest snapshot of the same target, seed, device and dtype under
``snapshots/<slug>/`` (newest by torch version, then by modification time). With ``update`` the
fresh snapshot is written instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .diff import DiffReport, diff_snapshots
from .errors import SnapshotError
from .snapshot import Snapshot, default_path, read, write


@dataclass
class CheckResult:
    """What a check found and did."""

    fresh: Snapshot
    against: Path | None
    report: DiffReport | None
    written: Path | None = None

    @property
    def drift(self) -> bool:
        """Whether the fresh build differs from the committed snapshot."""
        return self.report is not None and self.report.drift

    @property
    def exit_code(self) -> int:
        """1 on drift that was not accepted with ``update``, else 0."""
        return 1 if self.drift and self.written is None else 0


def _version_key(snap: Snapshot) -> Any:
    from packaging.version import InvalidVersion, Version

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
        snap = read(path)
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
    committed = read(path)
    report = diff_snapshots(committed, fresh, atol=atol, rtol=rtol, allow_renames=allow_renames)
    result = CheckResult(fresh=fresh, against=path, report=report)
    if report.drift and update:
        out = path if against is not None else default_path(fresh.manifest, snapshot_dir)
        write(fresh, out, digest_only=not committed.has_values(), force=True)
        result.written = out
    return result
