"""The validator of untrusted JSON documents: checkers compiled once from type annotations.

:func:`compile_type` turns a type (a TypedDict, ``list[...]``, ``dict[str, ...]``, a union, a
``Literal``, or ``Annotated`` with :class:`NonNegative` or :class:`Pattern`) into a checker that
raises :class:`SchemaViolation` naming the field and what is wrong. Every value, declared or not,
is held to the bounds below. The snapshot schema (:mod:`initaudit.snapshot.schema`) is checked
with it.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

#: The longest string (in characters) a snapshot may hold: tensor names, paths, texts.
MAX_STRING = 1 << 16
#: How deeply lists and objects may nest, counted from the document's top.
MAX_DEPTH = 32
#: Integers must lie in [-MAX_INT, MAX_INT] (64 bits: seeds, numels, shapes).
MAX_INT = (1 << 64) - 1


# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class NonNegative:
    """An ``Annotated`` marker: the integer is ``>= 0``."""


@dataclass(frozen=True)
class Pattern:
    """An ``Annotated`` marker: the string matches ``regex`` in full."""

    regex: str
    what: str


# --------------------------------------------------------------------------- the validator


class SchemaViolation(ValueError):
    """A document does not match the schema: ``where`` (``tensors[3].shape``) and what is wrong."""

    def __init__(self, problem: str, path: list[str | int] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str | int] = path if path is not None else []

    @property
    def where(self) -> str:
        """The field as a path: ``tensors[3].shape``."""
        out = ""
        parts = self.path[::-1]
        if len(parts) > 12:  # nesting is bounded, but a path of 32 steps reads as noise
            parts = [*parts[:10], "…", *parts[-2:]]
        for part in parts:
            if isinstance(part, int):
                out += f"[{part}]"
            elif part == "…" or (part.isidentifier() and len(part) <= 64):
                out += f".{part}" if out else part
            else:  # a key that is not a plain name: quoted, escaped, cut
                key = json.dumps(part[:64] + ("…" if len(part) > 64 else ""), ensure_ascii=False)
                out += f"[{key}]"
        return out or "(top level)"

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def got(value: Any) -> str:
    """A short description of a JSON value for a message: ``5``, ``"abc"``, ``a list``…"""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return (
            str(value) if value.bit_length() < 200 else f"an integer of {value.bit_length()} bits"
        )
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(value)  # NaN, Infinity
    if isinstance(value, str):
        if len(value) > 40:
            return f"a string of {len(value):,} characters"
        return json.dumps(value)
    if isinstance(value, list):
        return f"a list of {len(value):,} item(s)"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - json.loads makes none other


Checker = Callable[[Any, int], None]
#: Names the generated fast-path expressions use (a pattern's compiled ``fullmatch``).
_FAST_NAMES: dict[str, Any] = {}


class _Expect(SchemaViolation):
    def __init__(self, what: str, value: Any) -> None:
        super().__init__(f"expected {what}, got {got(value)}")


def _check_json(value: Any, depth: int) -> None:
    """Any JSON value, held to the bounds."""
    t = type(value)
    if t is str:
        if len(value) > MAX_STRING:
            raise SchemaViolation(f"string longer than {MAX_STRING:,} characters ({len(value):,})")
    elif t is int:
        if not -MAX_INT <= value <= MAX_INT:
            raise SchemaViolation(f"integer out of range (more than 64 bits): {got(value)}")
    elif t is float:
        if not math.isfinite(value):
            raise _Expect("a finite number", value)
    elif t is list or t is dict:
        if depth >= MAX_DEPTH:
            raise SchemaViolation(f"nested more than {MAX_DEPTH} levels deep")
        items = enumerate(value) if t is list else value.items()
        for key, item in items:
            if t is dict and len(key) > MAX_STRING:
                raise SchemaViolation(f"key longer than {MAX_STRING:,} characters")
            try:
                _check_json(item, depth + 1)
            except SchemaViolation as exc:
                exc.path.append(key)
                raise
    elif value is not None and t is not bool:  # pragma: no cover - json.loads makes none other
        raise _Expect("a JSON value", value)


@dataclass
class _Compiled:
    check: Checker
    what: str  # "a list of non-negative integers"
    plural: str  # "lists of non-negative integers"
    #: A Python expression over ``x``, true only for values ``check`` accepts (a fast path).
    fast: str | None = None
    #: For a nullable type, the fast test of its non-null values.
    fast_nonnull: str | None = None


def _plural(what: str) -> str:
    for article in ("an ", "a "):
        if what.startswith(article):
            head, _, rest = what[len(article) :].partition(" of ")
            word = head.rsplit(" ", 1)
            word[-1] = word[-1] + ("es" if word[-1].endswith("x") else "s")
            return " ".join(word) + (f" of {rest}" if rest else "")
    return what


def _str_checker(pattern: Pattern | None) -> _Compiled:
    if pattern is None:

        def check(value: Any, depth: int) -> None:
            if type(value) is not str:
                raise _Expect("a string", value)
            if len(value) > MAX_STRING:
                raise SchemaViolation(
                    f"string longer than {MAX_STRING:,} characters ({len(value):,})"
                )

        return _Compiled(check, "a string", "strings", f"type(x) is str and len(x) <= {MAX_STRING}")
    match = re.compile(pattern.regex).fullmatch
    what = pattern.what
    name = f"_re{len(_FAST_NAMES)}"
    _FAST_NAMES[name] = match
    fast = f"type(x) is str and len(x) <= {MAX_STRING} and {name}(x) is not None"

    def check_pattern(value: Any, depth: int) -> None:
        if type(value) is not str or len(value) > MAX_STRING or match(value) is None:
            raise _Expect(what, value)

    return _Compiled(check_pattern, what, _plural(what), fast)


def _int_checker(non_negative: bool) -> _Compiled:
    lo = 0 if non_negative else -MAX_INT
    what = "a non-negative integer" if non_negative else "an integer"

    def check(value: Any, depth: int) -> None:
        if type(value) is not int or not lo <= value <= MAX_INT:
            big = type(value) is int and abs(value) > MAX_INT
            raise _Expect(what + " of at most 64 bits" if big else what, value)

    return _Compiled(check, what, _plural(what), f"type(x) is int and {lo} <= x <= {MAX_INT}")


_FINITE = (
    f"(type(x) is float and x - x == 0.0) or (type(x) is int and -{MAX_INT} <= x <= {MAX_INT})"
)


def _float_checker() -> _Compiled:
    def check(value: Any, depth: int) -> None:
        t = type(value)
        if t is float:
            if not math.isfinite(value):
                raise _Expect("a finite number", value)
        elif t is not int or not -MAX_INT <= value <= MAX_INT:
            raise _Expect("a finite number", value)

    return _Compiled(check, "a finite number", "finite numbers", _FINITE)


def _bool_checker() -> _Compiled:
    def check(value: Any, depth: int) -> None:
        if type(value) is not bool:
            raise _Expect("true or false", value)

    return _Compiled(check, "true or false", "booleans", "type(x) is bool")


def _literal_checker(options: tuple[Any, ...]) -> _Compiled:
    allowed = set(options)
    what = "one of " + ", ".join(json.dumps(o) for o in options)
    what = what if len(options) > 1 else json.dumps(options[0])

    def check(value: Any, depth: int) -> None:
        if type(value) not in (str, int) or value not in allowed:
            raise _Expect(what, value)

    fast = None
    if all(type(o) is str for o in options):
        fast = f"type(x) is str and x in {frozenset(options)!r}"
    return _Compiled(check, what, what, fast)


def _union_checker(members: list[_Compiled], nullable: bool) -> _Compiled:
    what = " or ".join(m.what for m in members) + (" or null" if nullable else "")
    checks = [m.check for m in members]
    if len(checks) == 1:
        only = checks[0]

        def check_optional(value: Any, depth: int) -> None:
            if value is not None:
                try:
                    only(value, depth)
                except _Expect as exc:
                    if exc.path:
                        raise
                    raise _Expect(what, value) from None

        fast = f"x is None or ({members[0].fast})" if members[0].fast else None
        plural = " or ".join(m.plural for m in members) + " or nulls"
        return _Compiled(check_optional, what, plural, fast, members[0].fast)

    def check(value: Any, depth: int) -> None:
        if value is None and nullable:
            return
        for c in checks:
            try:
                c(value, depth)
                return
            except SchemaViolation:
                pass
        raise _Expect(what, value)

    fast = None
    if all(m.fast for m in members):
        fast = " or ".join(f"({m.fast})" for m in members)
        fast = f"x is None or {fast}" if nullable else fast
    return _Compiled(check, what, " or ".join(m.plural for m in members), fast)


def _fast_loop(slow: _Compiled, item: _Compiled, items: str) -> _Compiled:
    """``slow`` behind a generated loop that tests each item inline with ``item.fast``."""
    if item.fast is None:
        return slow
    namespace: dict[str, Any] = {"slow": slow.check, **_FAST_NAMES}
    code = "\n".join(
        [
            "def check(value, depth):",
            f"    if type(value) is not {'list' if items == 'value' else 'dict'}"
            f" or depth >= {MAX_DEPTH}:",
            "        return slow(value, depth)",
            f"    for {'x' if items == 'value' else 'key, x'} in {items}:",
            f"        if not ({item.fast})"
            + ("" if items == "value" else f" or len(key) > {MAX_STRING}")
            + ":",
            "            return slow(value, depth)",
        ]
    )
    exec(compile(code, "<schema loop>", "exec"), namespace)
    return _Compiled(namespace["check"], slow.what, slow.plural)


def _list_checker(item: _Compiled) -> _Compiled:
    check_item = item.check
    what = f"a list of {item.plural}"

    def check(value: Any, depth: int) -> None:
        if type(value) is not list:
            raise _Expect(what, value)
        if depth >= MAX_DEPTH:
            raise SchemaViolation(f"nested more than {MAX_DEPTH} levels deep")
        depth += 1
        i = 0
        try:
            for i, x in enumerate(value):  # noqa: B007 - i names the failing item
                check_item(x, depth)
        except SchemaViolation as exc:
            exc.path.append(i)
            raise

    return _fast_loop(_Compiled(check, what, f"lists of {item.plural}"), item, "value")


def _dict_checker(item: _Compiled) -> _Compiled:
    check_item = item.check
    what = "an object" if item.check is _check_json else f"an object of {item.plural}"

    def check(value: Any, depth: int) -> None:
        if type(value) is not dict:
            raise _Expect(what, value)
        if depth >= MAX_DEPTH:
            raise SchemaViolation(f"nested more than {MAX_DEPTH} levels deep")
        depth += 1
        for key, x in value.items():
            if len(key) > MAX_STRING:
                raise SchemaViolation(f"key longer than {MAX_STRING:,} characters")
            try:
                check_item(x, depth)
            except SchemaViolation as exc:
                exc.path.append(key)
                raise

    return _fast_loop(_Compiled(check, what, "objects"), item, "value.items()")


def _typeddict_checker(cls: type) -> _Compiled:
    """A checker generated as straight-line code: one fast inline test per field, the field's
    own checker called only when that test fails (it then raises, or accepts a rarer form)."""
    hints = get_type_hints(cls, include_extras=True)
    required = cls.__required_keys__  # type: ignore[attr-defined]
    known = frozenset(hints)
    namespace: dict[str, Any] = {
        "_Expect": _Expect,
        "SchemaViolation": SchemaViolation,
        "MAX_DEPTH": MAX_DEPTH,
        "_missing": object(),
        "_unknown": _unknown_keys,
        "_known": known,
        "_slow": _slow_field,
    }
    body = [
        "def check(value, depth):",
        "    if type(value) is not dict:",
        "        raise _Expect('an object', value)",
        "    if depth >= MAX_DEPTH:",
        f"        raise SchemaViolation({f'nested more than {MAX_DEPTH} levels deep'!r})",
        "    depth += 1",
    ]
    for i, (key, tp) in enumerate(hints.items()):
        c = compile_type(tp)
        namespace[f"c{i}"] = c.check
        k = repr(key)
        fast = c.fast or "False"
        if key in required:
            body += [
                "    try:",
                f"        x = value[{k}]",
                "    except KeyError:",
                f"        raise SchemaViolation({f'missing (expected {c.what})'!r}, [{k}]) from None",
                f"    if not ({fast}):",
            ]
        elif c.fast_nonnull:  # null and absent are the same to a nullable field
            body += [f"    x = value.get({k})", f"    if x is not None and not ({c.fast_nonnull}):"]
        else:
            body += [
                f"    x = value.get({k}, _missing)",
                f"    if x is not _missing and not ({fast}):",
            ]
        body += [f"        _slow(c{i}, x, depth, {k})"]
    body += ["    if not _known.issuperset(value):", "        _unknown(value, _known, depth)"]
    namespace.update(_FAST_NAMES)  # the fields' patterns are compiled by now
    exec(compile("\n".join(body), f"<schema {cls.__name__}>", "exec"), namespace)
    return _Compiled(namespace["check"], "an object", "objects")


def _slow_field(check: Checker, x: Any, depth: int, key: str) -> None:
    """A field the fast test did not accept: its checker decides (and names the field)."""
    try:
        check(x, depth)
    except SchemaViolation as exc:
        exc.path.append(key)
        raise


def _unknown_keys(value: dict[str, Any], known: frozenset[str], depth: int) -> None:
    """Keys this version does not know: held to the bounds only."""
    for key, x in value.items():
        if key not in known:
            if len(key) > MAX_STRING:
                raise SchemaViolation(f"key longer than {MAX_STRING:,} characters")
            try:
                _check_json(x, depth)
            except SchemaViolation as exc:
                exc.path.append(key)
                raise


@cache
def compile_type(tp: Any) -> _Compiled:
    """The checker of one schema type (compiled once per type)."""
    if tp is Any:
        scalar = f"x is None or type(x) is bool or (type(x) is str and len(x) <= {MAX_STRING})"
        return _Compiled(_check_json, "a JSON value", "JSON values", f"{scalar} or {_FINITE}")
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        marks = {type(m): m for m in meta}
        if base is int:
            return _int_checker(NonNegative in marks)
        if base is str:
            return _str_checker(marks.get(Pattern))
        return compile_type(base)  # pragma: no cover - no other annotated types
    if origin is Literal:
        return _literal_checker(get_args(tp))
    if origin is Union or isinstance(tp, types.UnionType):
        args = get_args(tp)
        members = [compile_type(a) for a in args if a is not type(None)]
        return _union_checker(members, nullable=type(None) in args)
    if origin is list:
        return _list_checker(compile_type(get_args(tp)[0]))
    if origin is dict:
        return _dict_checker(compile_type(get_args(tp)[1]))
    if tp is str:
        return _str_checker(None)
    if tp is bool:
        return _bool_checker()
    if tp is int:
        return _int_checker(False)
    if tp is float:
        return _float_checker()
    if isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__"):
        return _typeddict_checker(tp)
    raise TypeError(f"schema type {tp!r} has no checker")  # pragma: no cover
