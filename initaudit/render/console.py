"""Render results for people (rich tables, progress) and machines (JSON).

Everything printed goes through here; the core modules return data and never print.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from initaudit.recipes import library_text
from initaudit.render.tables import Column, layout
from initaudit.tensors import parse_dtype

_CONSOLE: Console | None = None
_ERR: Console | None = None

#: A table cell shows at most this many characters of a string from a snapshot or a model.
MAX_CELL = 200
#: A whole line (a verdict, a finding, an error message) at most this many.
MAX_LINE = 2000
#: Characters never printed as they are: C0/C1 controls (escape sequences start with ESC or
#: CSI), DEL, zero-width and bidirectional overrides (text that reads other than it is), byte
#: order marks and lone surrogates (which cannot be encoded at all).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object, limit: int = MAX_CELL) -> str:
    """Text from a snapshot or a model made safe for a terminal: controls shown as ``\\x1b``, cut.

    The result is plain text (no control characters, escape sequences or lone surrogates) of at
    most about ``limit`` characters, longer text cut with an ellipsis and the count left out;
    it still needs :func:`markup` (or a :class:`rich.text.Text`) before rich sees it. Linear time.
    """
    s = text if isinstance(text, str) else str(text)
    if len(s) > limit:
        s = f"{s[:limit]}…(+{len(s) - limit:,} chars)"
    return _UNSAFE.sub(_escaped, s)


def markup(text: object, limit: int = MAX_CELL) -> str:
    """:func:`safe` text escaped for rich markup, to put inside a markup string."""
    return escape(safe(text, limit))


def safe_block(text: str) -> str:
    """A multi-line report (markdown) with every control character but newlines made visible."""
    return "\n".join(_UNSAFE.sub(_escaped, line) for line in text.split("\n"))


class _Console(Console):
    """A rich console whose closed pipe raises BrokenPipeError, not rich's SystemExit(1) (drift)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def console() -> Console:
    """The stdout console (rich honours ``NO_COLOR`` and non-terminal output by itself)."""
    global _CONSOLE
    if _CONSOLE is None or _CONSOLE.file is not sys.stdout:
        _CONSOLE = _Console(file=sys.stdout, highlight=False, soft_wrap=False, emoji=False)
        if not _CONSOLE.is_terminal and "COLUMNS" not in os.environ:
            _CONSOLE.width = 160  # logs and CI pages are wide; 80 columns wraps every row
    return _CONSOLE


def err_console() -> Console:
    """The stderr console, for progress, warnings and errors."""
    global _ERR
    if _ERR is None or _ERR.file is not sys.stderr:
        _ERR = _Console(file=sys.stderr, highlight=False, emoji=False)
    return _ERR


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (plain, no markup, machine-readable)."""
    sys.stdout.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """Print a one-line error on stderr."""
    err_console().print(
        f"[bold red]initaudit: error:[/] {markup(message, MAX_LINE)}", markup=True, soft_wrap=True
    )


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    err_console().print(
        f"[yellow]initaudit: warning:[/] {markup(message, MAX_LINE)}", soft_wrap=True
    )


class Reporter:
    """Progress for long work: a spinner/bar on a terminal's stderr, silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and err_console().is_terminal and not os.environ.get("CI")
        self._progress: Progress | None = None
        self._task: Any = None
        self._last = 0.0

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Reporter]:
        """Show a progress line for the duration of a stage."""
        if not self.enabled:
            yield self
            return
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=err_console(), transient=True) as progress:
            self._progress = progress
            self._task = progress.add_task(description, total=total)
            try:
                yield self
            finally:
                self._progress = None

    def update(self, completed: int, total: int | None = None, text: str | None = None) -> None:
        """Advance the current stage (throttled; cheap to call per operation)."""
        if self._progress is None:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or completed < total):
            return
        self._last = now
        kwargs: dict[str, Any] = {"completed": completed}
        if total is not None:
            kwargs["total"] = total
        if text is not None:
            kwargs["description"] = text
        self._progress.update(self._task, **kwargs)

    def hashing(self, name: str) -> Callable[[int, int, int], None]:
        """A ``(done, total, nbytes)`` callback: tensors hashed of total, bytes and rate."""
        start = time.monotonic()

        def update(done: int, total: int, nbytes: int) -> None:
            seconds = time.monotonic() - start
            rate = f" at {human_bytes(nbytes / seconds)}/s" if seconds > 0 else ""
            self.update(
                done,
                text=f"hashing {name}: {done}/{total} tensors, {human_bytes(nbytes)}{rate}",
            )

        return update


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def origin_text(entry: dict[str, Any]) -> str:
    """``default (Linear.reset_parameters)``, ``user mlp.py:12`` or the library that set it.

    A library origin reads ``transformers 5.0.0 · GPT2PreTrainedModel._init_weights ·
    models/gpt2/modeling_gpt2.py:436``.
    """

    origin = entry["origin"]
    if origin == "default":
        return f"default ({entry['scope']})" if entry.get("scope") else "default"
    if origin == "library" and entry.get("library"):
        return library_text(entry["library"])
    if origin == "loaded" and entry.get("loaded"):
        return f"loaded from {entry['loaded']['file']}"
    if origin == "user":
        return f"user {entry['site']}" if entry.get("site") else "user"
    return origin


_ORIGIN_STYLE = {
    "default": "cyan",
    "library": "blue",
    "loaded": "dim",
    "user": "green",
    "uninitialized": "bold red",
    "unknown": "yellow",
}


#: A freeze summary lists every tensor up to this many; beyond, the head and the tail.
SUMMARY_ROWS = 60
_FREEZE_COLUMNS = (
    Column("#", justify="right", style="dim"),
    Column("tensor", names=True),
    Column("shape", drop=2),
    Column("init", limit=34),
    Column("origin", drop=1, limit=28),
)


def freeze_summary(manifest: dict[str, Any], written: list[str]) -> None:
    """The rich summary of a frozen snapshot: a row per tensor (head and tail of long ones)."""
    con = console()
    tgt = manifest["target"]
    env = manifest["provenance"]
    title = safe(
        f"{tgt['name']} · seed {manifest['seed']} · torch {env['torch']} · "
        f"{env['device']} · {env['default_dtype']} · CPU {env['cpu_capability']}",
        MAX_LINE,
    )
    counts: dict[str, int] = {}
    numel = 0
    nbytes = 0
    entries = manifest["tensors"]
    shown = range(len(entries))
    if len(entries) > SUMMARY_ROWS:  # rendering thousands of rows takes longer than the freeze
        head, tail = SUMMARY_ROWS * 2 // 3, SUMMARY_ROWS // 3
        shown = [*range(head), *range(len(entries) - tail, len(entries))]
    for entry in entries:
        counts[entry["origin"]] = counts.get(entry["origin"], 0) + 1
        numel += entry["stats"]["numel"]
        nbytes += entry["stats"]["numel"] * _itemsize(entry["dtype"])
    rows: list[list[Text]] = []
    for i in shown:
        entry = entries[i]
        if len(shown) < len(entries) and i == len(entries) - SUMMARY_ROWS // 3:
            rows.append(
                [
                    Text("…"),
                    Text(f"{len(entries) - len(shown):,} more tensors", style="dim"),
                    Text(""),
                    Text("all of them: --format json or initaudit inspect", style="dim"),
                    Text(""),
                ]
            )
        name = safe(entry["name"])
        if entry.get("aliases"):
            name += " = " + safe(", ".join(entry["aliases"]))
        init = safe(entry["init"]["text"]) if entry.get("init") else "—"
        rows.append(
            [
                Text(str(entry["order"])),
                Text(name),
                Text(safe("×".join(map(str, entry["shape"])) or "scalar")),
                Text(init),
                Text(safe(origin_text(entry)), style=_ORIGIN_STYLE.get(entry["origin"], "")),
            ]
        )
    con.print(layout(_FREEZE_COLUMNS, rows, con.width, title=title))
    parts = [f"{len(manifest['tensors'])} tensors", f"{numel:,} elements", human_bytes(nbytes)]
    parts += [f"{v} {k}" for k, v in sorted(counts.items())]
    orphans = len(manifest.get("orphan_draws") or [])
    if orphans:
        parts.append(f"{orphans} draw(s) thrown away")
    con.print(" · ".join(parts))
    for path in written:
        con.print(f"wrote {markup(path, MAX_LINE)}")


@functools.cache
def _itemsize(dtype: str) -> int:
    import torch

    try:
        return torch.empty((), dtype=parse_dtype(dtype)).element_size()
    except ValueError:
        return 0
