"""pytest plugin: assert that a model's initialization matches its committed snapshot.

Use the ``initaudit_snapshot`` fixture in a test::

    def test_init_is_unchanged(initaudit_snapshot):
        initaudit_snapshot(build_model)                  # a callable returning an nn.Module
        initaudit_snapshot("models/net.py:Net", seed=1)  # or a target spec, as on the CLI

It freezes the model in memory and diffs it against the newest committed snapshot under
``snapshots/<model>/`` (relative to the rootdir; ini option ``initaudit_snapshot_dir``). On drift
the test fails with the drift report; ``pytest --initaudit-update`` writes the new snapshot
instead. This module is a thin layer over :mod:`initaudit.diff.check`; it imports torch only when
the fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_UPDATE = "--initaudit-update"
_MODELS = "--initaudit-models"
#: What ``--initaudit-update`` did in this session: (wrote | updated | unchanged, model, path).
_UPDATES: list[tuple[str, str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--initaudit-update`` and the ``initaudit_snapshot_dir`` ini option."""
    group = parser.getgroup("initaudit", "initaudit: model initialization snapshots")
    group.addoption(
        _UPDATE,
        action="store_true",
        default=False,
        help="Write new initaudit snapshots instead of failing on drift (or a missing snapshot).",
    )
    group.addoption(
        _MODELS,
        action="store_true",
        default=False,
        help="Collect one test per model of [tool.initaudit] in the rootdir's pyproject.toml.",
    )
    parser.addini(
        "initaudit_snapshot_dir",
        "Folder of committed initaudit snapshots, relative to the rootdir (default: snapshots, "
        "or [tool.initaudit] snapshot-dir).",
        default=None,
    )
    parser.addini(
        "initaudit_models",
        "Collect one test per model of [tool.initaudit] (like --initaudit-models).",
        type="bool",
        default=False,
    )


def _target(target: str | Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """A :class:`initaudit.target.Target` from a spec string or a builder callable."""
    from initaudit.target import Target, resolve

    if isinstance(target, str):
        return resolve(target, kwargs)
    if not callable(target):
        raise TypeError(f"expected a target spec or a callable, got {type(target).__name__}")
    module = getattr(target, "__module__", None) or "model"
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", "build")
    return Target(spec=f"{module}:{name}", name=name, builder=target, kwargs=dict(kwargs))


def assert_init_matches(
    target: str | Callable[..., Any],
    *,
    seed: int = 0,
    device: str = "cpu",
    dtype: Any = None,
    snapshot_dir: Path | str = "snapshots",
    against: Path | str | None = None,
    update: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
    example_input: tuple[int, ...] | None = None,
    allow_renames: bool = False,
    **kwargs: Any,
) -> Any:
    """Fail the current test unless ``target``'s seeded init matches its committed snapshot."""
    from initaudit.diff.check import check_snapshot
    from initaudit.errors import InitAuditError
    from initaudit.freeze.memory import freeze
    from initaudit.render.diff import diff_plain

    error = None
    try:
        tgt = _target(target, kwargs)
        fresh, _ = freeze(tgt, seed, device=device, dtype=dtype, example_input=example_input)
        result = check_snapshot(
            fresh,
            against=Path(against) if against is not None else None,
            snapshot_dir=Path(snapshot_dir),
            update=update,
            atol=atol,
            rtol=rtol,
            allow_renames=allow_renames,
        )
    except InitAuditError as exc:
        error = exc
    if error is not None:
        hint = (
            f"; run pytest {_UPDATE} to create it" if "no committed snapshot" in str(error) else ""
        )
        pytest.fail(f"initaudit: {error.message}{hint}", pytrace=False)
    if update:
        action = "unchanged"
        if result.written is not None:
            action = "wrote" if result.report is None else "updated"
        _UPDATES.append((action, tgt.name, str(result.written or result.against)))
    if result.exit_code:
        pytest.fail(
            f"initaudit: the initial weights of {tgt.name} drifted from {result.against}\n"
            + diff_plain(result.report)
            + f"run pytest {_UPDATE} to accept the new init",
            pytrace=False,
        )
    return result


class SnapshotChecker:
    """The ``initaudit_snapshot`` fixture's value: call it with a target to check it."""

    def __init__(self, snapshot_dir: Path, update: bool) -> None:
        self.snapshot_dir = snapshot_dir
        self.update = update

    def __call__(self, target: str | Callable[..., Any], **options: Any) -> Any:
        """Check ``target`` (see :func:`assert_init_matches` for the options)."""
        options.setdefault("snapshot_dir", self.snapshot_dir)
        options.setdefault("update", self.update)
        return assert_init_matches(target, **options)


def pytest_configure(config: pytest.Config) -> None:
    """Start each session with an empty record of snapshot updates."""
    _UPDATES.clear()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Under ``--initaudit-update``: which snapshots were written, updated or left unchanged."""
    if not config.getoption(_UPDATE):
        return
    terminalreporter.section("initaudit snapshots")
    if not _UPDATES:
        terminalreporter.write_line("no initaudit check ran")
    for action, name, path in _UPDATES:
        terminalreporter.write_line(f"{action:9} {name}: {path}")
    counts = {a: sum(x[0] == a for x in _UPDATES) for a in ("wrote", "updated", "unchanged")}
    if _UPDATES:
        terminalreporter.write_line(", ".join(f"{n} {a}" for a, n in counts.items()))


def _snapshot_dir(config: pytest.Config) -> Path:
    """The ini option, else the project config's ``snapshot-dir``, else ``snapshots``."""
    ini = config.getini("initaudit_snapshot_dir")
    if ini:
        folder = Path(ini)
        return folder if folder.is_absolute() else Path(config.rootpath) / folder
    project = _project(config)
    if project is not None and project.snapshot_dir is not None:
        return project.snapshot_dir
    return Path(config.rootpath) / "snapshots"


def _project(config: pytest.Config) -> Any:
    """``[tool.initaudit]`` of the rootdir's pyproject.toml (None without one)."""
    from initaudit.config import load

    path = Path(config.rootpath) / "pyproject.toml"
    return load(path) if path.is_file() else None


@pytest.fixture
def initaudit_snapshot(request: pytest.FixtureRequest) -> SnapshotChecker:
    """A callable asserting that a model's init matches its committed snapshot."""
    config = request.config
    return SnapshotChecker(_snapshot_dir(config), bool(config.getoption(_UPDATE)))


class ModelItem(pytest.Item):
    """One configured model (``[[tool.initaudit.models]]``), checked as a test."""

    def __init__(self, *, model: Any, project: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.project = project

    def runtest(self) -> None:
        """Check the model against its committed snapshot (paths from the config's folder)."""
        from initaudit.target import parse_shape

        shape = parse_shape(self.model.example_input) if self.model.example_input else None
        target = self.model.target
        if target.partition(":")[0].endswith(".py"):  # a file: relative to the config's folder
            target = str(self.project.root / target)
        assert_init_matches(
            target,
            seed=self.model.seed,
            snapshot_dir=_snapshot_dir(self.config),
            update=bool(self.config.getoption(_UPDATE)),
            atol=self.project.atol,
            rtol=self.project.rtol,
            example_input=shape,
            **self.model.args,
        )

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """Where the test comes from: the pyproject.toml that configures the model."""
        return self.project.path, None, f"initaudit: {self.model.label}"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """With ``--initaudit-models`` (or ``initaudit_models = true``): one test per model."""
    if not (config.getoption(_MODELS) or config.getini("initaudit_models")):
        return
    project = _project(config)
    if project is None or not project.models:
        raise pytest.UsageError(
            f"{_MODELS}: no [[tool.initaudit.models]] in {config.rootpath / 'pyproject.toml'}"
        )
    for model in project.models:
        items.append(
            ModelItem.from_parent(
                session, name=f"initaudit[{model.label}]", model=model, project=project
            )
        )
