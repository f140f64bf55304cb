"""Tables that fit any terminal: columns dropped by priority, names folded at dots last.

:func:`layout` lays a table out for a given width. Every column keeps its natural width while
the table fits; when it does not, capped columns wrap to their limit, then the columns with the
highest ``drop`` number move, one at a time, out of the row into an indented detail line under
it. Only when nothing more can leave does a tensor-name column fold, at its dots
(``stage_1.0.bn_a.`` / ``running_mean``), never inside a segment; only a segment wider than the
column on its own is shortened in its middle (``embed…tions``), and only where that keeps every
shown name distinct. The result is plain :class:`rich.text.Text` lines, so colour
and ``NO_COLOR`` behave as everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from rich.console import Console, Group
from rich.text import Text

_GAP = 2  # spaces between columns
_INDENT = 4  # detail lines under a row


@dataclass(frozen=True)
class Column:
    """One column: its header, whether it holds names to fold, and when it may leave the row.

    ``drop`` 0 never leaves the row; otherwise higher numbers move into the detail line first.
    ``limit`` caps the column's width while the table is narrower than its content.
    """

    header: str
    drop: int = 0
    names: bool = False
    justify: str = "left"
    style: str | None = None
    limit: int | None = None


Cell = str | Text


def _text(cell: Cell) -> Text:
    return cell.copy() if isinstance(cell, Text) else Text(cell)


def fold_name(name: str, width: int) -> list[str]:
    """``name`` in lines of at most ``width`` characters, broken only after a ``.``."""
    if len(name) <= width:
        return [name]
    parts = [p + "." for p in name.split(".")]
    parts[-1] = parts[-1][:-1]
    lines: list[str] = []
    cur = ""
    for part in parts:
        if len(part) > width:
            part = elide(part, width)
        if cur and len(cur) + len(part) > width:
            lines.append(cur)
            cur = ""
        cur += part
    if cur:
        lines.append(cur)
    return lines


def elide(text: str, width: int) -> str:
    """``text`` shortened in its middle to ``width`` characters (``embed…tions``)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1 + 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def _fits(widths: list[int], width: int) -> bool:
    return sum(widths) + _GAP * (len(widths) - 1) <= width


def _name_floor(names: list[str]) -> int:
    """The narrowest a name column can get with every segment whole (at most 28)."""
    longest = max((len(seg) + 1 for n in names for seg in n.split(".")), default=8)
    return min(longest, 28)


def _unique_after_fold(names: list[str], width: int) -> bool:
    folded = ["".join(fold_name(n, width)) for n in names]
    return len(set(folded)) == len(set(names))


def layout(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int,
    *,
    title: str | None = None,
) -> Group:
    """The table as lines of text that fit ``width`` columns (see the module docstring)."""
    cols = list(columns)
    cells = [[_text(c) for c in row] for row in rows]
    natural = [
        max([len(col.header)] + [row[i].cell_len for row in cells]) for i, col in enumerate(cols)
    ]
    floors = []
    for i, col in enumerate(cols):
        if col.names:
            floors.append(max(len(col.header), _name_floor([row[i].plain for row in cells])))
        else:
            floors.append(min(natural[i], max(len(col.header), col.limit or natural[i])))
    keep = list(range(len(cols)))
    order = sorted((c for c in keep if cols[c].drop), key=lambda c: (-cols[c].drop, -c))
    moved: list[int] = []

    def widths_for(kept: list[int], fold_names: bool) -> list[int] | None:
        """Widths that fit: capped columns shrunk to their limit, names folded only if asked."""
        w = [natural[c] for c in kept]
        for j, c in enumerate(kept):
            if _fits(w, width):
                return w
            if cols[c].names and not fold_names:
                continue
            if cols[c].names or cols[c].limit is not None:
                room = width - (sum(w) - w[j]) - _GAP * (len(w) - 1)
                w[j] = max(floors[c], min(w[j], room))
        return w if _fits(w, width) else None

    # Names stay whole as long as any column can leave the row instead: they are the point.
    widths = widths_for(keep, fold_names=False)
    while widths is None and order:
        c = order.pop(0)
        keep.remove(c)
        moved.append(c)
        widths = widths_for(keep, fold_names=False)
    if widths is None:
        widths = widths_for(keep, fold_names=True)
    if widths is None:  # even the essential columns overflow: keep them at their floors
        widths = [floors[c] for c in keep]
    # room left over goes back to the columns that were shrunk, names first
    spare = width - sum(widths) - _GAP * (len(widths) - 1)
    for j in sorted(range(len(keep)), key=lambda j: not cols[keep[j]].names):
        if spare <= 0:
            break
        grow = min(spare, natural[keep[j]] - widths[j])
        if grow > 0:
            widths[j] += grow
            spare -= grow
    names_col = next((j for j, c in enumerate(keep) if cols[c].names), None)
    if names_col is not None:
        c = keep[names_col]
        w = widths[names_col]
        names = [row[c].plain for row in cells]
        while w < natural[c] and not _unique_after_fold(names, w):
            w += 1  # a wider column keeps shortened segments distinct
        widths[names_col] = w

    lines: list[Text] = []
    if title:
        for part in fold_name(title, width) if len(title) > width else [title]:
            lines.append(Text(part, style="bold"))
    header = Text()
    for j, c in enumerate(keep):
        if j:
            header.append(" " * _GAP)
        header.append_text(_pad(Text(cols[c].header, style="bold"), widths[j], cols[c].justify))
    lines.append(header)
    lines.append(Text("─" * min(width, header.cell_len), style="dim"))
    for row in cells:
        blocks: list[list[Text]] = []
        for j, c in enumerate(keep):
            cell = row[c]
            if cols[c].names:
                parts = fold_name(cell.plain, widths[j])
                block = [Text(p, style=_style_of(cell)) for p in parts]
            elif cell.cell_len > widths[j]:
                block = cell.wrap(_console(), widths[j], overflow="fold")
                block = list(block)
            else:
                block = [cell]
            blocks.append(block)
        height = max(len(b) for b in blocks)
        for k in range(height):
            line = Text()
            for j, c in enumerate(keep):
                if j:
                    line.append(" " * _GAP)
                part = blocks[j][k] if k < len(blocks[j]) else Text("")
                line.append_text(_pad(part, widths[j], cols[c].justify, cols[c].style))
            line.rstrip()
            lines.append(line)
        detail = [
            (cols[c].header, row[c]) for c in sorted(moved) if row[c].plain.strip()
        ]
        if detail:
            text = Text()
            for i, (head, cell) in enumerate(detail):
                if i:
                    text.append(" · ", style="dim")
                text.append(f"{head}: ", style="dim")
                text.append_text(cell)
            for part in text.wrap(_console(), max(20, width - _INDENT), overflow="fold"):
                lines.append(Text(" " * _INDENT) + part)
    return Group(*lines)


def _style_of(cell: Text) -> str:
    return str(cell.style) if cell.style else ""


def _pad(text: Text, width: int, justify: str, style: str | None = None) -> Text:
    t = text.copy()
    if style:
        t.stylize(style)
    gap = max(0, width - t.cell_len)
    if justify == "right":
        return Text(" " * gap) + t
    return t + Text(" " * gap)


@cache
def _console() -> Console:
    """A console only for measuring wraps (it prints nothing)."""
    return Console(width=10_000, no_color=True)
