"""``initaudit explicit`` and ``initaudit rewrite``: a model's initialization as explicit code,
verified bit for bit, printed or written into its class."""

from __future__ import annotations

from pathlib import Path

import click

from initaudit.commands.options import (
    example_input_option,
    format_option,
    parse_example_input,
    resolve_target,
    target_options,
)
from initaudit.errors import UsageError
from initaudit.render import console as render

_EPILOG_EXPLICIT = """\b
Examples:
  initaudit explicit examples/mlp.py                       # print the code
  initaudit explicit examples/cnn.py --out cnn_init.py     # verify, then write
  initaudit explicit examples/cnn.py --check cnn_init.py   # CI: re-verify after an upgrade
  initaudit explicit tests/models/lazy.py --example-input 2,3

Use the file: torch.manual_seed(SEED); initialize(model)
"""


@click.command(epilog=_EPILOG_EXPLICIT)
@target_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the verified module here (default: print it).",
)
@click.option(
    "--check",
    "check_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Re-verify an existing generated FILE.py against the installed torch.",
)
@click.option(
    "--unroll",
    is_flag=True,
    help="One statement per tensor: no loops over repeated blocks (ModuleList, Sequential).",
)
@example_input_option
@format_option("text", "json")
def explicit(
    target: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    out: Path | None,
    check_file: Path | None,
    unroll: bool,
    example_input: str | None,
    fmt: str,
) -> None:
    """Write TARGET's initialization as explicit code that reproduces it bit for bit.

    The generated module's initialize(model), called right after torch.manual_seed(SEED), sets
    every parameter and buffer to the values the seeded build gives and leaves torch's RNG in
    the same state, without relying on torch's module defaults. The code is verified (bitwise,
    with torch defaults on and with them replaced by NaN) before anything is written.
    """
    from initaudit.codegen import driver as codegen

    if device != "cpu" or dtype is not None:
        raise UsageError("explicit supports the default --device cpu and dtype only")
    if out is not None and check_file is not None:
        raise UsageError("--out and --check exclude each other")
    shape = parse_example_input(example_input)
    spec = resolve_target(target, args)
    reporter = render.Reporter(enabled=not quiet)
    with reporter.stage(f"tracing, generating and verifying {spec.name}"):
        result = codegen.explicit(
            spec, seed, out=out, check=check_file, example_input=shape, unroll=unroll
        )
    if fmt == "json":
        render.print_json(result.to_json())
        return
    if out is None and check_file is None:
        click.echo(result.source, nl=False)
        render.err_console().print(codegen.summary_line(result), markup=False, highlight=False)
    else:
        render.console().print(codegen.summary_line(result), markup=False, highlight=False)


_EPILOG_REWRITE = """\b
Examples:
  initaudit rewrite model.py:Net --diff     # show the edit, write nothing
  initaudit rewrite model.py:Net            # verify, then replace model.py atomically
"""


@click.command(epilog=_EPILOG_REWRITE)
@click.argument("spec", metavar="FILE.py[:CLASS]")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for verification.")
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff; write nothing.")
def rewrite(spec: str, seed: int, show_diff: bool) -> None:
    """Edit CLASS's __init__ in FILE.py so it initializes every tensor explicitly.

    Construction keeps giving bitwise the same tensors and RNG state, now without relying on
    torch's module defaults. Verified before the file is replaced; running it twice changes
    nothing the second time.
    """
    from initaudit.codegen import rewrite as rewrite_mod

    result = rewrite_mod.rewrite(spec, seed=seed, write=not show_diff)
    if show_diff:
        click.echo(result.diff(), nl=False)
    elif result.changed:
        render.console().print(
            f"rewrote {result.path} ({result.cls}.__init__): verified bit for bit, "
            "with torch defaults on and replaced by NaN",
            markup=False,
            highlight=False,
        )
    else:
        render.console().print(
            f"{result.path}: {result.cls}.__init__ is already explicit; nothing changed",
            markup=False,
            highlight=False,
        )
