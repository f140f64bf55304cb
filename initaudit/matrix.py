"""Freeze one target under several torch versions side by side and diff consecutive versions.

``run_matrix`` builds (or reuses) one isolated environment per torch version, freezes the
target in each as a separate process, writes the snapshots to ``snapshots/<model>/`` and diffs
each version against the one before it. ``gather`` is the same gathering step for snapshots
frozen elsewhere (one CI job per version): all snapshots of one target in a folder, ordered by
torch version.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import environments
from .errors import InitAuditError, SnapshotError, UsageError
from .snapshot import Snapshot, default_filename, move, read

Log = Callable[[str], None]


def _no_log(message: str) -> None:
    """Discard a progress message."""


@dataclass
class PairResult:
    """The diff of two consecutive snapshots."""

    before: str
    after: str
    report: Any
    data: dict[str, Any]

    @property
    def drift(self) -> bool:
        """Whether anything differs between the two versions."""
        return self.data.get("verdict") != "identical"


@dataclass
class MatrixResult:
    """Snapshots in version order and the diff of each consecutive pair."""

    versions: list[str]
    snapshots: list[Snapshot]
    pairs: list[PairResult]
    environments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        """Whether any consecutive pair drifts."""
        return any(p.drift for p in self.pairs)

    @property
    def exit_code(self) -> int:
        """0 when every consecutive pair is identical, 1 otherwise."""
        return 1 if self.drift else 0

    @property
    def target(self) -> dict[str, Any]:
        """The target block shared by all snapshots."""
        return self.snapshots[0].target

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result: ``versions`` and ``pairs`` (each as ``diff`` gives it)."""
        return {
            "target": self.target,
            "seed": self.snapshots[0].manifest["seed"],
            "verdict": "drift" if self.drift else "identical",
            "versions": self.versions,
            "snapshots": [str(s.path) for s in self.snapshots],
            "environments": self.environments,
            "pairs": [{"from": p.before, "to": p.after, **p.data} for p in self.pairs],
        }


# --------------------------------------------------------------------------- diffing


def diff_pair(
    a: Snapshot, b: Snapshot, atol: float | None = None, rtol: float | None = None
) -> PairResult:
    """Diff two snapshots with :mod:`initaudit.diff` and keep its JSON form."""
    from . import diff as diff_mod

    report = diff_mod.diff_snapshots(a, b, atol=atol, rtol=rtol)
    return PairResult(_version(a), _version(b), report, diff_json(report))


def diff_json(report: Any) -> dict[str, Any]:
    """The JSON form of a diff report, as ``initaudit diff --format json`` prints it."""
    from .diff import report_to_json

    return report_to_json(report)


def _version(s: Snapshot) -> str:
    return str(s.environment.get("torch"))


def _version_key(s: Snapshot) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(_version(s)))
    except InvalidVersion:
        return (1, _version(s))


def diff_consecutive(
    snapshots: list[Snapshot],
    atol: float | None = None,
    rtol: float | None = None,
    environments_info: list[dict[str, Any]] | None = None,
) -> MatrixResult:
    """Diff each snapshot against the one before it."""
    check_same_target(snapshots)
    pairs = [diff_pair(a, b, atol, rtol) for a, b in itertools.pairwise(snapshots)]
    return MatrixResult(
        versions=[_version(s) for s in snapshots],
        snapshots=snapshots,
        pairs=pairs,
        environments=environments_info or [],
    )


def check_same_target(snapshots: list[Snapshot]) -> None:
    """Refuse to compare snapshots of different targets or seeds."""
    first = snapshots[0]
    ident = (first.target.get("slug"), first.target.get("kwargs"), first.manifest["seed"])
    for s in snapshots[1:]:
        other = (s.target.get("slug"), s.target.get("kwargs"), s.manifest["seed"])
        if other != ident:
            raise UsageError(
                f"{s.label} is a snapshot of {other[0]} (seed {other[2]}), but {first.label} "
                f"is of {ident[0]} (seed {ident[2]}); a folder must hold snapshots of one target"
            )


# --------------------------------------------------------------------------- folder mode


def gather(folder: Path | str) -> list[Snapshot]:
    """All snapshots in ``folder`` (searched recursively), ordered by torch version."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    paths = sorted(
        p
        for p in folder.rglob("*.json")
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    snapshots = [read(p, within=folder) for p in paths]
    if len(snapshots) < 2:
        raise UsageError(
            f"{folder} holds {len(snapshots)} snapshot(s); diffing a folder needs at least two "
            "(one per torch version)"
        )
    check_same_target(snapshots)
    snapshots.sort(key=lambda s: (_version_key(s), str(s.path)))
    return snapshots


def diff_folder(
    folder: Path | str, atol: float | None = None, rtol: float | None = None
) -> MatrixResult:
    """Gather a folder's snapshots in version order and diff consecutive pairs."""
    return diff_consecutive(gather(folder), atol, rtol)


# --------------------------------------------------------------------------- matrix


def run_matrix(
    spec: str,
    versions: list[str],
    *,
    args: tuple[str, ...] = (),
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    jobs: int = 1,
    env_dir: Path | None = None,
    snapshot_dir: Path = Path("snapshots"),
    extra: tuple[str, ...] = (),
    atol: float | None = None,
    rtol: float | None = None,
    log: Log = _no_log,
) -> MatrixResult:
    """Freeze ``spec`` under each torch version (in its own environment) and diff in order."""
    if len(versions) < 2:
        raise UsageError("matrix needs at least two --torch versions to compare")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    for v in versions:  # all refusals before anything is installed
        environments.check_supported(v)
    unique = list(dict.fromkeys(versions))
    env_dir = Path(env_dir) if env_dir is not None else environments.default_env_dir()

    envs = _parallel(
        jobs, [lambda v=v: environments.ensure(v, env_dir, extra=extra, log=log) for v in unique]
    )
    by_version = dict(zip(unique, envs, strict=True))

    snapshot_dir = Path(snapshot_dir)
    try:
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".initaudit-matrix-", dir=snapshot_dir))
    except OSError as exc:
        raise SnapshotError(
            f"cannot write snapshots under {snapshot_dir}: {exc.strerror or exc}"
        ) from None
    try:
        outs: list[Path] = []
        seen: dict[str, int] = {}
        for i, v in enumerate(versions):
            env = by_version[v]
            name = default_filename(
                {
                    "provenance": {
                        "torch": env.torch_version,
                        "device": device,
                        "default_dtype": dtype or "float32",
                    },
                    "seed": seed,
                }
            )
            seen[v] = seen.get(v, 0) + 1
            if seen[v] > 1:  # the same version again: a second, independent freeze
                name = name[: -len(".json")] + f"-run{seen[v]}.json"
            (work / str(i)).mkdir()
            outs.append(work / str(i) / name)

        def freeze_one(i: int) -> Path:
            env = by_version[versions[i]]
            log(f"torch {env.torch_version}: freezing {spec}")
            environments.freeze_in(
                env, spec, outs[i], seed=seed, args=args, device=device, dtype=dtype, cwd=Path.cwd()
            )
            return outs[i]

        _parallel(jobs, [lambda i=i: freeze_one(i) for i in range(len(versions))])
        snapshots = [_place(read(out), snapshot_dir, log) for out in outs]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    info = [
        {
            "torch_requested": v,
            "torch": by_version[v].torch_version,
            "path": str(by_version[v].path),
            "reused": by_version[v].reused,
        }
        for v in unique
    ]
    log("diffing consecutive versions")
    return diff_consecutive(snapshots, atol, rtol, info)


def _place(snap: Snapshot, snapshot_dir: Path, log: Log = _no_log) -> Snapshot:
    """Move a freshly frozen snapshot (manifest and values as one unit) into ``snapshots/<model>/``."""
    assert snap.path is not None
    dest = snapshot_dir / snap.target["slug"] / snap.path.name
    if dest.exists():  # say so: it may be a committed baseline
        try:
            old = [(t["name"], t["hash"]) for t in read(dest).tensors]
        except SnapshotError:
            old = None
        same = old == [(t["name"], t["hash"]) for t in snap.tensors]
        log(f"replaced {dest}" + (" (same tensors)" if same else " (its tensors differ!)"))
    move(snap, dest)
    return read(dest)


def _parallel(jobs: int, tasks: list[Callable[[], Any]]) -> list[Any]:
    """Run tasks on up to ``jobs`` threads; results in order; the first error is raised."""
    if jobs == 1 or len(tasks) == 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        futures = [pool.submit(t) for t in tasks]
        results: list[Any] = []
        error: BaseException | None = None
        for f in futures:
            try:
                results.append(f.result())
            except InitAuditError as exc:
                error = error or exc
                results.append(None)
            except BaseException:
                for g in futures:
                    g.cancel()
                raise
        if error is not None:
            raise error
        return results
