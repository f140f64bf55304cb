"""The click options and helpers the commands share: target, format and tolerance options,
the project config, and the in-memory freeze with progress that several commands run.

Nothing here imports torch at import time (``initaudit --help`` must stay fast): the core is
imported inside the helpers that use it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from initaudit.errors import UsageError
from initaudit.render import console as render


def target_options(fn: Any = None, *, optional: bool = False) -> Any:
    """Options every command that builds a model takes (``optional``: TARGET may be left out,
    and the command then acts on every model of ``[tool.initaudit]``)."""
    if fn is None:
        return lambda f: target_options(f, optional=optional)
    for opt in reversed(
        [
            click.argument("target", required=not optional),
            click.option(
                "--arg",
                "args",
                multiple=True,
                metavar="KEY=VALUE",
                help="Keyword argument for the model (VALUE is a Python literal); repeatable.",
            ),
            click.option(
                "--seed", default=0, show_default=True, type=int, help="Seed for the build."
            ),
            click.option(
                "--device",
                default="cpu",
                show_default=True,
                help="Device to build on (cpu, cuda, …).",
            ),
            click.option(
                "--dtype",
                default=None,
                help="Default dtype during the build (float32, float64, bfloat16, …).",
            ),
            click.option("-q", "--quiet", is_flag=True, help="No progress output."),
        ]
    ):
        fn = opt(fn)
    return fn


def format_option(*choices: str) -> Any:
    """``--format`` with the given choices, ``text`` first and default (``github`` by default
    inside GitHub Actions, where a command offers it)."""

    def pick(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
        if value is not None:
            return value
        if "github" in choices and os.environ.get("GITHUB_ACTIONS") == "true":
            return "github"
        return choices[0]

    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=None,
        callback=pick,
        show_default=choices[0] + (" (github under GITHUB_ACTIONS)" if "github" in choices else ""),
        help="Output format.",
    )


def resolve_target(spec: str, args: tuple[str, ...]) -> Any:
    """Parse ``--arg`` pairs and resolve the target spec."""
    from initaudit.target import parse_args, resolve

    return resolve(spec, parse_args(args))


def resolve_dtype(name: str | None) -> Any:
    """``--dtype`` as a torch dtype (or None)."""
    if name is None:
        return None
    from initaudit.tensors import parse_dtype

    try:
        return parse_dtype(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_device(device: str) -> None:
    """Fail early, with a clear line, when the device cannot be used."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"--device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available in this torch installation")


def snapshot_dir_option(help_text: str) -> Any:
    """``--snapshot-dir DIR`` with a command's own help text; left out, it is the project
    config's ``snapshot-dir`` (``[tool.initaudit]``), else ``snapshots``."""

    def pick(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
        if value is not None:
            return value
        cfg = project_config(ctx)
        return cfg.snapshot_dir if cfg is not None and cfg.snapshot_dir else Path("snapshots")

    return click.option(
        "--snapshot-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        callback=pick,
        show_default="snapshots, or [tool.initaudit] snapshot-dir",
        help=help_text,
    )


def project_config(ctx: click.Context | None = None) -> Any:
    """The ``[tool.initaudit]`` of the nearest pyproject.toml (None without one), read once."""
    from initaudit import config

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if "initaudit_config" not in root.meta:
        root.meta["initaudit_config"] = config.discover()
    return root.meta["initaudit_config"]


def from_config(ctx: click.Context, name: str, value: Any, configured: Any) -> Any:
    """``value`` as given on the command line, else the project config's ``configured``."""
    source = ctx.get_parameter_source(name)
    if configured is not None and source is click.core.ParameterSource.DEFAULT:
        return configured
    return value


def example_input_option(fn: Any) -> Any:
    """``--example-input SHAPE``: one forward on zeros after the build (lazy modules)."""
    return click.option(
        "--example-input",
        metavar="SHAPE",
        default=None,
        help="Run model(torch.zeros(SHAPE)) once after the build, e.g. 2,3, so lazy "
        "modules (LazyLinear & co.) create their parameters.",
    )(fn)


def parse_example_input(text: str | None) -> tuple[int, ...] | None:
    """``--example-input`` as a shape (or None)."""
    if text is None:
        return None
    from initaudit.target import parse_shape

    return parse_shape(text)


def freeze_target(
    spec: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    example_input: str | None = None,
    values_ahead: bool = False,
) -> tuple[Any, Any]:
    """Resolve and freeze a target in memory, with progress on a terminal."""
    check_device(device)
    shape = parse_example_input(example_input)
    target = resolve_target(spec, args)
    return target, freeze_resolved(
        target, seed, device, dtype, quiet, shape, values_ahead=values_ahead
    )


def freeze_model(model: Any, device: str, dtype: str | None, quiet: bool) -> Any:
    """Freeze one configured model (``[[tool.initaudit.models]]``) in memory."""
    from initaudit.target import resolve

    check_device(device)
    shape = parse_example_input(model.example_input)
    return freeze_resolved(resolve(model.target, model.args), model.seed, device, dtype, quiet, shape)


def freeze_resolved(
    target: Any,
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    shape: tuple[int, ...] | None,
    guard: Callable[[int], None] | None = None,
    values_ahead: bool = False,
) -> Any:
    """Freeze a resolved target in memory, with progress on a terminal; return the snapshot.

    ``guard(n)`` runs after each init event of the build (it may raise to abandon the build).
    """
    from initaudit.freeze.memory import freeze

    reporter = render.Reporter(enabled=not quiet)
    with reporter.stage(f"building {target.name} under seed {seed}") as rep:

        def on_event(n: int) -> None:
            if guard is not None:
                guard(n)
            rep.update(n, text=f"building {target.name}: {n} ops traced")

        snap, _ = freeze(
            target,
            seed,
            device=device,
            dtype=resolve_dtype(dtype),
            on_event=on_event,
            on_tensor=rep.hashing(target.name),
            example_input=shape,
            values_ahead=values_ahead,
        )
    return snap


def report_out_option(fn: Any) -> Any:
    """``--out FILE.html``: where ``--format html`` writes its page (default: stdout)."""
    return click.option(
        "--out",
        "report_out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="With --format html: write the self-contained page here (default: stdout).",
    )(fn)


def check_report_out(fmt: str, report_out: Path | None) -> None:
    """Refuse ``--out`` without ``--format html`` (it would silently be ignored)."""
    if report_out is not None and fmt != "html":
        raise UsageError("--out writes the HTML report; add --format html")


def print_matrix(result: Any, fmt: str, report_out: Path | None = None) -> None:
    """Print a matrix (or ``diff DIR``) as text, json, markdown, html or github."""
    from initaudit.render import matrix as render_matrix

    if fmt == "html":
        from initaudit.render import html as render_html

        render_html.write(render_html.matrix_html(result), report_out)
    elif fmt == "github":
        from initaudit.render.github import matrix_github

        matrix_github(result)
    else:
        {"json": render_matrix.matrix_json, "markdown": render_matrix.print_markdown}.get(
            fmt, render_matrix.matrix_text
        )(result)


def print_diff(report: Any, fmt: str) -> None:
    """Print a diff report as ``text``, ``json``, ``markdown`` or ``github``."""
    from initaudit.render import diff as render_diff

    if fmt == "github":
        from initaudit.render.github import diff_github

        diff_github(report)
        return
    {"json": render_diff.diff_json, "markdown": render_diff.print_markdown}.get(
        fmt, render_diff.diff_text
    )(report)


def _tolerance(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A tolerance is a finite number ≥ 0 (NaN would compare nothing, inf accept anything)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"must be a finite number ≥ 0, got {value}")
    return value


def allow_renames_option(fn: Any) -> Any:
    """``--allow-renames``: tensors that were only renamed are not drift."""
    return click.option(
        "--allow-renames",
        is_flag=True,
        help="Tensors only renamed (bitwise identical, same shape and RNG state, another "
        "name) count as identical: exit 0 for a refactor that renames and changes nothing else.",
    )(fn)


def tolerance_options(fn: Any) -> Any:
    """``--atol`` and ``--rtol``."""
    for opt in reversed(
        [
            click.option(
                "--atol",
                type=float,
                default=None,
                callback=_tolerance,
                help="Absolute tolerance: tensors within it count as equal (default: bitwise).",
            ),
            click.option(
                "--rtol",
                type=float,
                default=None,
                callback=_tolerance,
                help="Relative tolerance (|after − before| ≤ atol + rtol·|before|).",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def configured_models(cfg: Any, command: str, **given: Any) -> Any:
    """The project config, when it configures models; a usage error otherwise."""
    if cfg is None or not cfg.models:
        where = cfg.path if cfg is not None else "no pyproject.toml found"
        raise UsageError(
            f"{command} needs a TARGET, or [[tool.initaudit.models]] in pyproject.toml ({where})"
        )
    extra = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
    if extra:
        raise UsageError(f"{', '.join(extra)} go(es) with a TARGET, not with the configured models")
    return cfg


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """``8G`` → 8 GiB, ``512M``, ``1.5G``, ``1000000`` (bytes); a UsageError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if m is None or float(m.group(1)) <= 0:
        raise UsageError(f"--max-memory {text!r}: expected a size such as 8G, 512M or 1000000")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
