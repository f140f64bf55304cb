"""The ``initaudit`` command line: click parses, rich renders, the core does the work.

Domain errors (:class:`initaudit.errors.InitAuditError`) are caught once, here, and printed as
one line with the error's exit code (0 clean, 1 drift or failed audit, 2 usage or input error).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
from typing import Any, NoReturn

import click

from initaudit import __version__
from initaudit.commands.check import check
from initaudit.commands.diff import diff
from initaudit.commands.explicit import explicit, rewrite
from initaudit.commands.freeze import freeze
from initaudit.commands.inspect import inspect
from initaudit.commands.matrix import matrix
from initaudit.errors import InitAuditError
from initaudit.render import console as render

_DEBUG_FLAG = "--debug"


#: Exit status after stdout's reader went away (``initaudit check X | head -1``): 128 + SIGPIPE,
#: what a program killed by SIGPIPE gives, never 1 (drift) or 0 for a report nobody read whole.
EXIT_BROKEN_PIPE = 141


class _PipeClosed(Exception):
    """stdout's reader went away; raised past click, whose own EPIPE handling exits 1."""


class _Group(click.Group):
    """A click group that turns domain errors into one line and an exit code."""

    def main(self, args: list[str] | None = None, *a: Any, **kw: Any) -> Any:  # type: ignore[override]
        as_program = args is None  # run as `initaudit ...`, not called from Python (CliRunner)
        argv = list(sys.argv[1:] if args is None else args)
        debug = _DEBUG_FLAG in argv or bool(os.environ.get("INITAUDIT_DEBUG"))
        argv = [x for x in argv if x != _DEBUG_FLAG]
        try:
            code = self._run(argv, debug, *a, **kw)
        except BrokenPipeError:  # stderr's reader went away too, while an error was printed
            code = _pipe_closed()
        _finish(code, as_program)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed from None

    def _run(self, argv: list[str], debug: bool, *a: Any, **kw: Any) -> int:
        try:
            rv = super().main(argv, *a, standalone_mode=False, **kw)
            return rv if type(rv) is int else 0  # click returns --help's and --version's code
        except SystemExit as exc:  # a command's own sys.exit(verdict); model code never gets here
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except _PipeClosed:
            return _pipe_closed()
        except InitAuditError as exc:
            if debug:
                traceback.print_exc()
            render.error(str(exc))
            return exc.exit_code
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.UsageError as exc:
            # one line, like every other error: click's own form is three (usage, hint, error)
            where = exc.ctx.command_path if exc.ctx is not None else "initaudit"
            render.error(f"{exc.format_message()} (see '{where} --help')")
            return 2
        except click.ClickException as exc:
            exc.show()
            return 2 if exc.exit_code not in (0, 1) else exc.exit_code
        except click.Abort:
            render.error("aborted")
            return 130
        except KeyboardInterrupt:
            render.error("interrupted; nothing was half-written")
            return 130
        except BaseException as exc:  # Exception, and any other BaseException: never exit 1
            if debug:
                traceback.print_exc()
            render.error(
                f"internal error: {type(exc).__name__}: {exc} "
                "(run again with --debug for the traceback, and please report it)"
            )
            return 2


def _pipe_closed() -> int:
    """Quiet exit after a broken stdout pipe: later writes and the final flush go to /dev/null."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def _finish(code: int, as_program: bool) -> NoReturn:
    """Flush stdout and exit with ``code``; without interpreter shutdown if model threads live on."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _pipe_closed()
    except (OSError, ValueError, AttributeError):
        pass
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if as_program and others:
        # A thread the model started that keeps running torch ops would be killed mid-op by
        # interpreter shutdown (std::terminate, SIGABRT). Output is complete: leave at once.
        with contextlib.suppress(Exception):
            render.warn(
                f"{len(others)} thread(s) started by model code still running "
                f"({', '.join(t.name for t in others[:3])}): initaudit traced only the thread "
                "that built the model, and exits without waiting for them"
            )
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


_EPILOG_MAIN = """\b
Examples:
  initaudit freeze examples/mlp.py               # snapshot the seeded initial weights
  initaudit freeze examples/highway.py --format json
  initaudit diff snapshots/mlp/A.json snapshots/mlp/B.json
  initaudit check examples/mlp.py                # CI gate against the committed snapshot

Exit codes: 0 clean, 1 drift or failed audit, 2 usage or input error.
Add --debug anywhere to see tracebacks.
"""


@click.group(
    cls=_Group, epilog=_EPILOG_MAIN, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="initaudit")
def main() -> None:
    """Audit, freeze and diff how PyTorch models get their initial weights."""


for _command in (freeze, diff, check, explicit, rewrite, inspect, matrix):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
