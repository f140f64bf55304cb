"""The readable level of an init: ``torch.nn.init`` function names, their parameters, call text.

Nothing here imports torch. Reading and diffing snapshots only needs the parameter names of the
installed ``torch.nn.init`` functions (to tell a call's own arguments from derived locals such as
``fan_in`` and ``bound``); when torch is not imported yet they are read from the source of
``torch/nn/init.py`` with :mod:`ast`, which gives the same names as :func:`inspect.signature`
without paying for ``import torch`` (about 1.5 s).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import sys
from functools import cache
from typing import Any

#: Public ``torch.nn.init`` functions whose calls are the readable level of a trace.
INIT_FUNCTIONS: tuple[str, ...] = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)


@cache
def _params_from_source() -> dict[str, tuple[str, ...]]:
    """Parameter names of the init functions, parsed from the installed ``torch/nn/init.py``."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = os.path.join(next(iter(spec.submodule_search_locations)), "nn", "init.py")
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in INIT_FUNCTIONS:
            a = node.args
            names = [x.arg for x in (*a.posonlyargs, *a.args)]
            if a.vararg:
                names.append(a.vararg.arg)
            names += [x.arg for x in a.kwonlyargs]
            if a.kwarg:
                names.append(a.kwarg.arg)
            out[node.name] = tuple(names)
    return out


@cache
def init_params(call: str) -> tuple[str, ...] | None:
    """The parameter names of the installed ``torch.nn.init.<call>``, or None for other calls."""
    if call not in INIT_FUNCTIONS:
        return None
    module = sys.modules.get("torch.nn.init")
    if module is not None:
        fn = getattr(module, call, None)
        return tuple(inspect.signature(fn).parameters) if fn is not None else None
    return _params_from_source().get(call)


def describe_call(call: str, args: dict[str, Any]) -> str:
    """Render a readable call, e.g. ``kaiming_uniform_(a=√5, mode='fan_in', …)``."""
    params = init_params(call)
    keep = set(params) if params is not None else set(args)
    parts = []
    for k, v in args.items():
        if k not in keep:  # fan, gain, bound: derived values, kept in args but not the call
            continue
        parts.append(f"{k}={format_value(v)}")
    return f"{call}({', '.join(parts)})"


def format_value(v: Any) -> str:
    """A recorded argument as it reads best: ``√5`` for square roots of integers, 6 digits."""
    if isinstance(v, float):
        sq = v * v
        if v > 0 and abs(sq - round(sq)) < 1e-9 and round(sq) > 1 and not float(v).is_integer():
            return f"√{round(sq)}"
        return f"{v:.6g}"
    return repr(v)


def library_text(lib: dict[str, Any]) -> str:
    """``transformers 5.0.0 · GPT2PreTrainedModel._init_weights · models/gpt2/modeling_gpt2.py:436``."""
    head = f"{lib.get('name')} {lib['version']}" if lib.get("version") else str(lib.get("name"))
    return " · ".join(str(p) for p in (head, lib.get("function"), lib.get("site")) if p)
