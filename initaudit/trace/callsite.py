"""Where an operation came from: a walk of the Python stack to the user's frame.

The readable call is the outermost ``torch.nn.init`` function on the stack, with its resolved
arguments read from its frame; the origin is decided by the innermost frame that is not
torch's plumbing (torch's module defaults, an installed library, or the user).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from initaudit.libraries import CODE_FACTS, FILE_CLASS, SELF, STDLIB, TORCH, USER, classify_file
from initaudit.recipes import INIT_FUNCTIONS

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TORCH_MODULES_DIR = os.path.join(_TORCH_DIR, "nn", "modules") + os.sep

_INIT_CODES: dict[Any, str] = {
    getattr(nn.init, n).__code__: n for n in INIT_FUNCTIONS if hasattr(nn.init, n)
}
#: Local variables of init functions worth keeping as resolved arguments (fan, bound, …).
_DERIVED_LOCALS = ("fan", "fan_in", "fan_out", "gain", "std", "bound")


_AS_IS = {type(None), bool, int, str}
_AS_STR = {torch.dtype, torch.device, torch.layout, torch.memory_format}


def jsonable(value: Any) -> Any:
    """A JSON-compatible form of an argument value (tensors and storages by shape and size)."""
    kind = type(value)  # exact types first: the common values, one set lookup each
    if kind in _AS_IS:
        return value
    if kind in _AS_STR:
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return f"<tensor {tuple(value.shape)}>"
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value)
    if isinstance(value, torch.Generator):
        return "<generator>"
    if isinstance(value, (torch.UntypedStorage, torch.TypedStorage)):
        return f"<storage {value.nbytes()} bytes>"  # its repr lists every byte
    return repr(value)


class CallSite:
    """Where one operation came from: its readable call and arguments, origin and sites."""

    __slots__ = ("args", "call", "frame", "function", "lib_site", "library", "origin", "scope", "site")

    def __init__(self) -> None:
        self.call: str | None = None
        self.args: dict[str, Any] = {}
        self.frame: Any = None
        self.origin = "user"
        self.site: str | None = None
        self.scope: str | None = None
        self.library: str | None = None
        self.function: str | None = None
        self.lib_site: str | None = None



def _qualname(code: Any) -> str:
    return getattr(code, "co_qualname", code.co_name)  # co_qualname: Python >= 3.11


def _writes_to(frame: Any, key: int | None) -> bool:
    """Whether a frame's first argument is a tensor on the storage ``key`` (a helper's target)."""
    code = frame.f_code
    if key is None or not (code.co_argcount or code.co_posonlyargcount):
        return False
    first = frame.f_locals.get(code.co_varnames[0])
    if not isinstance(first, torch.Tensor):
        return False
    try:
        return first.untyped_storage()._cdata == key
    except (RuntimeError, NotImplementedError):
        return False


#: What a frame's code is, as :func:`callsite` tests it (the small ints compare fastest).
_TORCH, _USER, _SELF, _STDLIB, _LIBRARY = range(5)
_KINDS = {TORCH: _TORCH, USER: _USER, SELF: _SELF, STDLIB: _STDLIB}


def _facts(code: Any) -> tuple[Any, ...]:
    """``(code, nn.init name, kind, in torch/nn/modules, file class, file name)`` of a code
    object, computed once per code object (its file's class once per file)."""
    fname = code.co_filename
    cls = FILE_CLASS.get(fname)
    if cls is None:
        cls = FILE_CLASS[fname] = classify_file(fname)
    kind = _KINDS.get(cls, _LIBRARY) if isinstance(cls, str) else _LIBRARY
    in_modules = kind == _TORCH and fname.startswith(_TORCH_MODULES_DIR)
    facts = (code, _INIT_CODES.get(code), kind, in_modules, cls, fname)
    CODE_FACTS[id(code)] = facts
    return facts


def callsite(start: Any, target: torch.Tensor | None = None, files: set[str] | None = None) -> CallSite:
    """Walk the Python stack from ``start`` outwards up to the first user frame.

    The innermost frame that is not torch's plumbing decides the origin: one in
    ``torch/nn/modules`` makes it torch's ``default``, one in an installed distribution makes it
    ``library`` (the library's function outside its init helpers, and that frame's
    ``file:line``), a user file makes it ``user``. A default built by library code also names
    that library function (which module it built, not who chose the init). Library helpers (contiguous library frames
    whose first argument is the written tensor) are the readable call when no
    ``torch.nn.init`` function is on the stack. Each code object's facts are computed once
    per process, so a frame costs one dictionary lookup.
    """
    cs = CallSite()
    frame = start
    facts_of = CODE_FACTS.get
    decided = False
    helper: Any = None  # the outermost library helper frame so far
    in_helpers = True
    key: Any = _UNKNOWN  # the target's storage, read when a library frame first needs it
    while frame is not None:
        code = frame.f_code
        facts = facts_of(id(code))
        if facts is None:
            facts = _facts(code)
        name = facts[1]
        if name is not None:
            cs.call, cs.frame = name, frame
        kind = facts[2]
        if kind == _TORCH:
            if not decided and facts[3]:
                cs.origin = "default"
                decided = True
                owner = frame.f_locals.get("self")
                if isinstance(owner, nn.Module):
                    cs.scope = f"{type(owner).__name__}.{code.co_name}"
        elif kind == _USER:
            cs.site = f"{facts[5]}:{frame.f_lineno}"
            if files is not None:
                files.add(facts[5])
            break
        elif kind == _SELF:
            if decided:
                break  # back in initaudit (the target's builder): past the build's own code
        elif kind == _LIBRARY:
            if files is not None:
                files.add(facts[5])
            if not decided:
                decided = True
                cs.origin = "library"
            if cs.function is None:
                if cs.origin == "library" and in_helpers:
                    if key is _UNKNOWN:
                        key = _storage_key(target)
                    is_helper = _writes_to(frame, key)
                else:
                    is_helper = False
                if is_helper:
                    helper = frame
                else:  # the library's function (for a torch default: the code that built it)
                    in_helpers = False
                    cls = facts[4]
                    cs.library = cls.name
                    cs.function = _qualname(code)
                    cs.lib_site = f"{cls.path}:{frame.f_lineno}"
        frame = frame.f_back
    if helper is not None:
        lib = FILE_CLASS[helper.f_code.co_filename]
        if cs.function is None:  # user code called the library's helper itself
            cs.origin = "user"
            cs.library = lib.name
            cs.function = _qualname(helper.f_code)
            cs.lib_site = f"{lib.path}:{helper.f_lineno}"
        if cs.frame is None:  # no torch.nn.init function: the helper is the readable call
            module = helper.f_globals.get("__name__", "")
            cs.call = f"{module}.{_qualname(helper.f_code)}" if module else _qualname(helper.f_code)
            cs.frame = helper
            cs.args = _init_args(helper, skip_first=True)
            return cs
    if cs.frame is not None:
        cs.args = _init_args(cs.frame)
    return cs


_UNKNOWN = object()


def _storage_key(t: torch.Tensor | None) -> int | None:
    if t is None:
        return None
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return None


def _init_args(frame: Any, skip_first: bool = False) -> dict[str, Any]:
    code = frame.f_code
    n = code.co_argcount + code.co_kwonlyargcount
    names = code.co_varnames[1 if skip_first else 0 : n]
    f_locals = frame.f_locals
    out = {k: jsonable(f_locals[k]) for k in names if k != "tensor" and k in f_locals}
    if skip_first:
        return {k: v for k, v in out.items() if v is not None}
    for k in _DERIVED_LOCALS:
        if k in f_locals and k not in out and isinstance(f_locals[k], (int, float)):
            out[k] = jsonable(f_locals[k])
    if out.get("generator") is None:
        out.pop("generator", None)
    return out
