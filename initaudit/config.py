"""Project configuration: ``[tool.initaudit]`` in the nearest ``pyproject.toml``.

::

    [tool.initaudit]
    snapshot-dir = "snapshots"       # default for freeze, check and the pytest plugin
    format = "text"                  # default --format of check (text, json, markdown, github)
    atol = 0.0                       # tolerance for check (default: bitwise)
    rtol = 0.0

    [[tool.initaudit.models]]        # the models a bare `initaudit check` / `freeze` gates
    target = "examples/highway.py"   # file.py, file.py:NAME or package.module:NAME
    args = { depth = 14 }            # keyword arguments (TOML values)
    seed = 0
    example-input = "2,3"            # one forward on zeros after the build (lazy modules)

Paths are relative to the ``pyproject.toml``'s folder. Unknown keys are an error naming the key.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initaudit.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_TOP_KEYS = ("snapshot-dir", "format", "atol", "rtol", "models")
_MODEL_KEYS = ("target", "args", "seed", "example-input")
FORMATS = ("text", "json", "markdown", "github")


@dataclass(frozen=True)
class ModelConfig:
    """One configured model: its target spec, keyword arguments, seed and example input."""

    target: str
    args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    example_input: str | None = None

    @property
    def label(self) -> str:
        """How the model is named in summaries: the target, with its arguments."""
        if not self.args:
            return self.target
        return f"{self.target} " + " ".join(f"{k}={v!r}" for k, v in self.args.items())


@dataclass(frozen=True)
class ProjectConfig:
    """The ``[tool.initaudit]`` table of one ``pyproject.toml``."""

    path: Path
    models: tuple[ModelConfig, ...] = ()
    snapshot_dir: Path | None = None
    format: str | None = None
    atol: float | None = None
    rtol: float | None = None

    @property
    def root(self) -> Path:
        """The folder paths in the table are relative to."""
        return self.path.parent


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` (default: the working directory) or above."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _unknown(where: str, table: dict[str, Any], known: tuple[str, ...], path: Path) -> None:
    for key in table:
        if key not in known:
            hint = key.replace("_", "-")
            also = f"; did you mean {hint!r}?" if hint in known else ""
            raise UsageError(
                f"{path}: unknown key {key!r} in {where}{also} (known: {', '.join(known)})"
            )


def _number(value: Any, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise UsageError(f"{path}: [tool.initaudit] {key} must be a non-negative number")
    return float(value)


def _model(i: int, raw: Any, path: Path) -> ModelConfig:
    where = f"[[tool.initaudit.models]] #{i + 1}"
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: {where} must be a table")
    _unknown(where, raw, _MODEL_KEYS, path)
    target = raw.get("target")
    if not isinstance(target, str) or not target:
        raise UsageError(f"{path}: {where} needs target = \"file.py[:NAME]\"")
    args = raw.get("args", {})
    if not isinstance(args, dict) or not all(isinstance(k, str) and k.isidentifier() for k in args):
        raise UsageError(f"{path}: {where}: args must be a table of keyword arguments")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"{path}: {where}: seed must be an integer")
    example = raw.get("example-input")
    if example is not None and not isinstance(example, str):
        if isinstance(example, list) and all(isinstance(x, int) for x in example):
            example = ",".join(map(str, example))
        else:
            raise UsageError(f"{path}: {where}: example-input must be a shape like \"2,3\"")
    return ModelConfig(target=target, args=dict(args), seed=seed, example_input=example)


def load(path: Path) -> ProjectConfig:
    """Read and validate the ``[tool.initaudit]`` table of ``path`` (empty when absent)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("initaudit")
    if table is None:
        return ProjectConfig(path=path)
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.initaudit] must be a table")
    _unknown("[tool.initaudit]", table, _TOP_KEYS, path)
    models = table.get("models", [])
    if not isinstance(models, list):
        raise UsageError(f"{path}: [tool.initaudit] models must be an array of tables")
    fmt = table.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"{path}: [tool.initaudit] format must be one of {', '.join(FORMATS)}")
    snap = table.get("snapshot-dir")
    if snap is not None and not isinstance(snap, str):
        raise UsageError(f"{path}: [tool.initaudit] snapshot-dir must be a path")
    return ProjectConfig(
        path=path,
        models=tuple(_model(i, m, path) for i, m in enumerate(models)),
        snapshot_dir=path.parent / snap if snap is not None else None,
        format=fmt,
        atol=_number(table["atol"], "atol", path) if "atol" in table else None,
        rtol=_number(table["rtol"], "rtol", path) if "rtol" in table else None,
    )


def discover(start: Path | None = None) -> ProjectConfig | None:
    """The configuration of the nearest ``pyproject.toml``, or None when there is none."""
    path = find_pyproject(start)
    return load(path) if path is not None else None
