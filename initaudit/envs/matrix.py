"""Freeze one target in several environments side by side and diff consecutive columns.

A column is a set of pip requirements (``--env "transformers==5.0.0"``; ``--torch V`` is
``--env torch==V``). ``run_matrix`` builds (or reuses) one isolated environment per column,
freezes the target in each as a separate process, writes the snapshots to
``snapshots/<model>/`` and diffs each column against the one before it. ``gather`` is the same
gathering step for snapshots frozen elsewhere (one CI job per column): all snapshots of one
target in a folder, ordered by what varies between them (the versions their provenance
records in ``env_requirements``, else the torch version).
"""

from __future__ import annotations

import itertools
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initaudit.diff import compare as diff_mod
from initaudit.diff.report import report_to_json
from initaudit.envs import environments
from initaudit.errors import InitAuditError, SnapshotError, UsageError
from initaudit.provenance import requirement_name
from initaudit.snapshot.read import Snapshot, read
from initaudit.snapshot.write import default_filename, move

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
    """Snapshots in column order and the diff of each consecutive pair.

    ``versions`` are the column labels: the torch version when only torch varies, else what
    varies (``transformers-5.0.0``); ``varying`` names the distributions that vary.
    """

    versions: list[str]
    snapshots: list[Snapshot]
    pairs: list[PairResult]
    environments: list[dict[str, Any]] = field(default_factory=list)
    varying: list[str] = field(default_factory=lambda: ["torch"])

    @property
    def torch_only(self) -> bool:
        """Whether the columns differ in torch alone (or not at all)."""
        return self.varying in ([], ["torch"])

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
            "varying": self.varying,
            "columns": [
                {"label": v, "versions": column_versions(s), "snapshot": str(s.path)}
                for v, s in zip(self.versions, self.snapshots, strict=True)
            ],
            "snapshots": [str(s.path) for s in self.snapshots],
            "environments": self.environments,
            "pairs": [{"from": p.before, "to": p.after, **p.data} for p in self.pairs],
        }


# --------------------------------------------------------------------------- diffing


def diff_pair(
    a: Snapshot,
    b: Snapshot,
    atol: float | None = None,
    rtol: float | None = None,
    labels: tuple[str, str] | None = None,
) -> PairResult:
    """Diff two snapshots with :mod:`initaudit.diff` and keep its JSON form."""

    report = diff_mod.diff_snapshots(a, b, atol=atol, rtol=rtol)
    before, after = labels or (_version(a), _version(b))
    return PairResult(before, after, report, diff_json(report))


def diff_json(report: Any) -> dict[str, Any]:
    """The JSON form of a diff report, as ``initaudit diff --format json`` prints it."""

    return report_to_json(report)


def _version(s: Snapshot) -> str:
    return str(s.environment.get("torch"))


def column_versions(s: Snapshot) -> dict[str, str]:
    """``{distribution: version}`` a snapshot was frozen with: torch, plus the provenance's
    ``env_requirements`` (written by ``matrix`` or ``$INITAUDIT_ENV_REQUIREMENTS``), else its
    ``libraries`` when it records them."""
    env = s.environment
    out: dict[str, str] = {}
    for key in ("env_requirements", "libraries"):
        found = env.get(key)
        if isinstance(found, dict):
            out.update({str(k): str(v) for k, v in found.items() if v is not None})
            break
    out["torch"] = _version(s)
    return out


def varying(snapshots: list[Snapshot]) -> list[str]:
    """The distributions whose versions differ between snapshots (torch last)."""
    return _varying_of([column_versions(s) for s in snapshots])


def _varying_of(maps: list[dict[str, str]]) -> list[str]:
    names = [*sorted(set().union(*maps) - {"torch"}), "torch"]
    return [n for n in names if len({m.get(n) for m in maps}) > 1]


def column_label(versions: dict[str, str], vary: list[str]) -> str:
    """A column's name: its torch version when only torch varies, else ``transformers-5.0.0``."""
    if vary in ([], ["torch"]):
        return versions.get("torch", "?")
    return " ".join(f"{n}-{versions.get(n, 'none')}" for n in vary)


def _version_part(text: str | None) -> Any:
    from packaging.version import InvalidVersion, Version

    if text is None:
        return (0,)
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (2, text)


def _order_key(s: Snapshot, vary: list[str]) -> Any:
    versions = column_versions(s)
    return tuple(_version_part(versions.get(n)) for n in (vary or ["torch"]))


def diff_consecutive(
    snapshots: list[Snapshot],
    atol: float | None = None,
    rtol: float | None = None,
    environments_info: list[dict[str, Any]] | None = None,
) -> MatrixResult:
    """Diff each snapshot against the one before it."""
    check_same_target(snapshots)
    vary = varying(snapshots)
    labels = [column_label(column_versions(s), vary) for s in snapshots]
    pairs = [
        diff_pair(a, b, atol, rtol, (la, lb))
        for (a, la), (b, lb) in itertools.pairwise(zip(snapshots, labels, strict=True))
    ]
    return MatrixResult(
        versions=labels,
        snapshots=snapshots,
        pairs=pairs,
        environments=environments_info or [],
        varying=vary,
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
    """All snapshots in ``folder`` (searched recursively), ordered by what varies between them."""
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
            "(one per torch version or environment)"
        )
    check_same_target(snapshots)
    vary = varying(snapshots)
    snapshots.sort(key=lambda s: (_order_key(s, vary), str(s.path)))
    return snapshots


def diff_folder(
    folder: Path | str, atol: float | None = None, rtol: float | None = None
) -> MatrixResult:
    """Gather a folder's snapshots in column order and diff consecutive pairs."""
    return diff_consecutive(gather(folder), atol, rtol)


# --------------------------------------------------------------------------- matrix


@dataclass(frozen=True)
class Column:
    """One matrix column: the torch version it pins and its other requirements."""

    spec: str
    torch: str
    extra: tuple[str, ...]

    @property
    def requirements(self) -> tuple[str, ...]:
        """Every requirement of the column, torch first."""
        return (f"torch=={self.torch}", *self.extra)

    @property
    def names(self) -> tuple[str, ...]:
        """The distributions the column names, torch first."""
        return ("torch", *(requirement_name(r) for r in self.extra))


def running_torch() -> str:
    """The public version of the running torch (``2.13.0`` for ``2.13.0+cpu``)."""
    from importlib import metadata

    from packaging.version import Version

    try:
        return Version(metadata.version("torch")).public
    except metadata.PackageNotFoundError:
        raise UsageError(
            "no torch is installed here to pin in a column; name one with --env 'torch==V …' "
            "or --with torch==V"
        ) from None


def _torch_pin(req: str, option: str) -> str:
    """The version of an exact ``torch==V`` requirement; anything looser is refused."""
    from packaging.requirements import Requirement

    parsed = Requirement(req)
    specs = list(parsed.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        raise UsageError(
            f"{option} {req!r}: pin torch to one release (torch==2.13.0); a range or an "
            "unpinned torch can pull a multi-GB build"
        )
    if parsed.extras or parsed.marker or parsed.url:
        raise UsageError(f"{option} {req!r}: torch takes a plain version pin, e.g. torch==2.13.0")
    return specs[0].version


def build_columns(
    versions: list[str] | tuple[str, ...] = (),
    envs: list[str] | tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> list[Column]:
    """Parse ``--torch``, ``--env`` and ``--with`` into columns; refuse bad input up front.

    Each ``--env`` SPEC is one column of requirements separated by spaces; ``--torch V`` is
    ``--env torch==V``; ``--with`` adds to every column. A column that pins no torch gets the
    running torch's version (never an unpinned torch).
    """
    if versions and envs:
        raise UsageError(
            "give the columns with --env or with --torch, not both (--torch V is short for "
            "--env torch==V)"
        )
    specs = [f"torch=={environments.parse_version(v)}" for v in versions] or list(envs)
    if len(specs) < 2:
        raise UsageError(
            "matrix needs at least two --torch versions or --env columns to compare"
        )
    common: dict[str, str] = {}
    for raw in extra:
        req = environments.check_requirement(raw, "--with")
        name = requirement_name(req)
        if name in common:
            raise UsageError(f"--with names {name} twice ({common[name]!r}, {req!r})")
        common[name] = req
    columns: list[Column] = []
    for i, spec in enumerate(specs):
        option = "--torch" if versions else "--env"
        if not spec.split():
            raise UsageError(f"--env {spec!r} is empty; give one or more requirements")
        own: dict[str, str] = {}
        for raw in spec.split():
            req = environments.check_requirement(raw, option)
            name = requirement_name(req)
            if name in own:
                raise UsageError(f"{option} {spec!r} names {name} twice")
            if name in common:
                raise UsageError(
                    f"{name} is given both in {option} {spec!r} and in --with {common[name]!r}"
                )
            own[name] = req
        merged = {**common, **own}
        torch_req = merged.pop("torch", None)
        if torch_req is not None:
            torch_version = _torch_pin(torch_req, option if "torch" in own else "--with")
        else:
            torch_version = running_torch()
        environments.check_supported(torch_version)
        others = tuple(merged[n] for n in sorted(merged))
        label = versions[i] if versions else spec
        columns.append(Column(spec=label, torch=torch_version, extra=others))
    return columns


def run_matrix(
    spec: str,
    versions: list[str] | tuple[str, ...] = (),
    *,
    envs: list[str] | tuple[str, ...] = (),
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
    """Freeze ``spec`` in each column's environment (``--torch`` versions or ``--env`` specs,
    plus ``extra`` in every one) and diff consecutive columns."""
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    columns = build_columns(versions, envs, extra)  # all refusals before anything is installed
    keys = list(dict.fromkeys((c.torch, c.extra) for c in columns))
    env_dir = Path(env_dir) if env_dir is not None else environments.default_env_dir()

    envs_built = _parallel(
        jobs,
        [lambda k=k: environments.ensure(k[0], env_dir, extra=k[1], log=log) for k in keys],
    )
    by_key = dict(zip(keys, envs_built, strict=True))
    record = tuple(dict.fromkeys(n for c in columns for n in c.names))
    if record == ("torch",):  # torch alone: the provenance's torch says it all, as before
        record = ()
    installed = {k: environments.installed_versions(e.path) for k, e in by_key.items()}
    col_versions = []
    for c in columns:
        env = by_key[(c.torch, c.extra)]
        have = installed[(c.torch, c.extra)]
        versions_of = {n: have[n] for n in record if n != "torch" and n in have}
        versions_of["torch"] = env.torch_version
        col_versions.append(versions_of)
    vary = _varying_of(col_versions)

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
        labels: list[str] = []
        seen: dict[str, int] = {}
        for i, c in enumerate(columns):
            env = by_key[(c.torch, c.extra)]
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
            label = column_label(col_versions[i], vary)
            labels.append(label)
            prefix = "_".join(
                f"{n}-{col_versions[i].get(n, 'none')}" for n in vary if n != "torch"
            )
            if prefix:  # the name carries what varies: transformers-5.0.0-torch-2.13.0-seed0
                name = re.sub(r"[^A-Za-z0-9.+_-]", "_", prefix) + "-" + name
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:  # the same column again: a second, independent freeze
                name = name[: -len(".json")] + f"-run{seen[name]}.json"
            (work / str(i)).mkdir()
            outs.append(work / str(i) / name)

        def freeze_one(i: int) -> Path:
            c = columns[i]
            env = by_key[(c.torch, c.extra)]
            where = f"torch {env.torch_version}" if vary in ([], ["torch"]) else labels[i]
            log(f"{where}: freezing {spec}")
            environments.freeze_in(
                env, spec, outs[i], seed=seed, args=args, device=device, dtype=dtype,
                cwd=Path.cwd(), record=record, label=where,
            )  # fmt: skip
            return outs[i]

        _parallel(jobs, [lambda i=i: freeze_one(i) for i in range(len(columns))])
        snapshots = [_place(read(out), snapshot_dir, log) for out in outs]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    info = []
    for key in keys:
        env = by_key[key]
        i = next(j for j, c in enumerate(columns) if (c.torch, c.extra) == key)
        c = columns[i]
        info.append(
            {
                "column": labels[i],
                "requirements": list(c.requirements),
                "torch_requested": c.torch,
                "torch": env.torch_version,
                "versions": col_versions[i],
                "path": str(env.path),
                "reused": env.reused,
            }
        )
    log("diffing consecutive columns")
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
