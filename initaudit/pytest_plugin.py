"""pytest plugin: assert that a model's initialization matches its committed snapshot.

Use the ``initaudit_snapshot`` fixture in a test::

    def test_init_is_unchanged(initaudit_snapshot):
        initaudit_snapshot(build_model)                  # a callable returning an nn.Module
        initaudit_snapshot("models/net.py:Net", seed=1)  # or a target spec, as on the CLI

It freezes the model in memory and diffs it against the newest committed snapshot under
``snapshots/<model>/`` (relative to the rootdir; ini option ``initaudit_snapshot_dir``). On drift
the test fails with the drift report; ``pytest --initaudit-update`` writes the new snapshot
instead. This module is a thin layer over :mod:`initaudit.check`; it imports torch only when
the fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_UPDATE = "--initaudit-update"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--initaudit-update`` and the ``initaudit_snapshot_dir`` ini option."""
    group = parser.getgroup("initaudit", "initaudit: model initialization snapshots")
    group.addoption(
        _UPDATE,
        action="store_true",
        default=False,
        help="Write new initaudit snapshots instead of failing on drift (or a missing snapshot).",
    )
    parser.addini(
        "initaudit_snapshot_dir",
        "Folder of committed initaudit snapshots, relative to the rootdir (default: snapshots).",
        default="snapshots",
    )


def _target(target: str | Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """A :class:`initaudit.target.Target` from a spec string or a builder callable."""
    from .target import Target, resolve

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
    allow_renames: bool = False,
    **kwargs: Any,
) -> Any:
    """Fail the current test unless ``target``'s seeded init matches its committed snapshot."""
    from .check import check_snapshot
    from .errors import InitAuditError
    from .render_diff import diff_plain
    from .snapshot import freeze

    error = None
    try:
        tgt = _target(target, kwargs)
        fresh, _ = freeze(tgt, seed, device=device, dtype=dtype)
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


@pytest.fixture
def initaudit_snapshot(request: pytest.FixtureRequest) -> SnapshotChecker:
    """A callable asserting that a model's init matches its committed snapshot."""
    config = request.config
    folder = Path(config.getini("initaudit_snapshot_dir") or "snapshots")
    if not folder.is_absolute():
        folder = Path(config.rootpath) / folder
    return SnapshotChecker(folder, bool(config.getoption(_UPDATE)))
