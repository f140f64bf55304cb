"""Wrap generated statements the way ``ruff format`` does, so the code passes its check."""

from __future__ import annotations

import re
import textwrap

#: ruff's and black's default, so the code passes `ruff format --check` in a project with no config.
LINE_LENGTH = 88


def wrap_line(line: str, indent: str, reserve: int = 0, inside: bool = False) -> list[str]:
    """Wrap one statement the way ``ruff format`` does, for calls that do not fit
    (``reserve``: characters that will follow the last line, e.g. a trailing comma;
    ``inside``: the line is inside brackets, where a chain of calls splits one call a line)."""
    if len(indent) + len(line) + reserve <= LINE_LENGTH:
        return [indent + line]
    if line.startswith("# "):
        width = LINE_LENGTH - len(indent) - 2
        return [indent + "# " + part for part in textwrap.wrap(line[2:], width)] or [indent + "#"]
    if line.endswith(",") and line[:-1].endswith((")", "]")):
        # an argument of an exploded call: wrap the call, keep its trailing comma
        out = wrap_line(line[:-1], indent, reserve + 1, inside)
        out[-1] += ","
        return out
    inner_indent = indent + "    "
    lhs, rhs = _split_assignment(line)
    if lhs is not None and len(_fluent_pieces(rhs)) > 2:
        # ``x = a(…).b(…).c(…)``: a chain of several calls goes in parentheses
        return [indent + lhs + " = (", *wrap_line(rhs, inner_indent, inside=True), indent + ")"]
    pieces = _fluent_pieces(line)
    if inside and len(pieces) > 2:
        # inside brackets a chain of several calls splits before each call, one a line
        out = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            out.extend(wrap_line(piece, indent, reserve if last else 0, inside=True))
        return out
    empty_call = re.search(r"[)\]]\.[A-Za-z_][A-Za-z0-9_]*\(\)$", line)
    if empty_call:
        # ``f(a, b).clone()``: an empty trailing call stays on the last line, ``).clone()``
        tail = line[empty_call.start() + 1 :]
        out = wrap_line(line[: empty_call.start() + 1], indent, reserve + len(tail), inside)
        out[-1] += tail
        return out
    prefix, opening, inner, closing = _split_outer_call(line)
    if not opening:
        return [indent + line]
    one = inner_indent + inner
    if len(one) <= LINE_LENGTH and not _top_level_trailing_comma(inner):
        return [indent + prefix + opening, one, indent + closing]
    parts = _split_top_level(inner)
    out = [indent + prefix + opening]
    if len(parts) == 1 and not _top_level_trailing_comma(inner):
        # a sole argument is split, not exploded
        out.extend(wrap_line(parts[0], inner_indent, inside=True))
    else:
        for part in parts:
            out.extend(wrap_line(part + ",", inner_indent, inside=True))
    out.append(indent + closing)
    return out


def _split_assignment(line: str) -> tuple[str | None, str]:
    """(``x``, ``a.b(c)``) for ``x = a.b(c)``; (None, line) when it is no simple assignment."""
    head, sep, rest = line.partition(" = ")
    if sep and head.isidentifier():
        return head, rest
    return None, line


def _fluent_pieces(expr: str) -> list[str]:
    """``a.b(c).d(e)`` as [``a.b(c)``, ``.d(e)``]: split before each top-level dot that
    follows a closing bracket (where ``ruff format`` breaks a call chain)."""
    pieces, depth, start, quote = [], 0, 0, None
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "." and depth == 0 and i > 0 and expr[i - 1] in ")]":
            pieces.append(expr[start:i])
            start = i
    pieces.append(expr[start:])
    return pieces


def _split_outer_call(line: str) -> tuple[str, str, str, str]:
    """Split ``a.b(x, y)`` into (``a.b``, ``(``, ``x, y``, ``)``) at the last top-level
    bracket pair (a call or a list literal)."""
    if not line.endswith((")", "]")):
        return line, "", "", ""
    depth = 0
    for i in range(len(line) - 1, -1, -1):
        ch = line[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            depth -= 1
            if depth == 0:
                if ch == "[" or i > 0:
                    return line[:i], ch, line[i + 1 : -1], line[-1]
                return line, "", "", ""
    return line, "", "", ""


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _top_level_trailing_comma(text: str) -> bool:
    return text.rstrip().endswith(",")


def wrap_lines(lines: list[str], indent: str, outer: int = 0) -> list[str]:
    """Indent statements and wrap long calls the way ``ruff format`` does.

    ``outer`` is extra indentation the lines will get later (they wrap as if it were there).
    """
    pad = " " * outer
    out: list[str] = []
    for line in lines:
        out.extend(w[outer:] for w in wrap_line(line, pad + indent)) if line else out.append("")
    return out
