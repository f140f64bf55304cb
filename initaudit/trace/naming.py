"""The built model's named tensors: which are parameters, which alias which, who owns them."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from initaudit.recipes import INIT_FUNCTIONS


def named_tensors(model: nn.Module) -> list[tuple[str, str, torch.Tensor, bool]]:
    """``(name, kind, tensor, persistent)`` for every parameter and buffer, state_dict keys first."""
    out: list[tuple[str, str, torch.Tensor, bool]] = []
    params = {id(p) for p in model.parameters(recurse=True)}
    seen: set[str] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        if not isinstance(t, torch.Tensor):
            continue
        kind = "parameter" if id(t) in params or isinstance(t, nn.Parameter) else "buffer"
        out.append((name, kind, t, True))
        seen.add(name)
    for name, buf in model.named_buffers(remove_duplicate=False):
        if name not in seen and buf is not None:
            out.append((name, "buffer", buf, False))
            seen.add(name)
    return out


def same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors are the same view of the same memory."""
    return (
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
        and a.device == b.device
    )


def view_key(t: torch.Tensor) -> tuple[Any, ...]:
    """What :func:`same_view` compares, as a dict key (meta tensors: by storage identity)."""
    if t.device.type == "meta":
        try:
            where: Any = ("meta", t.untyped_storage()._cdata, t.storage_offset())
        except (RuntimeError, NotImplementedError):
            where = ("meta", id(t))
    else:
        where = t.data_ptr()
    return (where, tuple(t.shape), t.stride(), t.dtype, t.device)



def module_type_of(model: nn.Module, tensor_name: str) -> str:
    """The class name of the module that owns ``tensor_name``."""
    path = tensor_name.rsplit(".", 1)[0] if "." in tensor_name else ""
    try:
        mod = model.get_submodule(path) if path else model
    except AttributeError:
        return "?"
    if "parametrizations" in path.split("."):
        owner_path = path.split(".parametrizations")[0]
        try:
            mod = model.get_submodule(owner_path) if owner_path else model
        except AttributeError:
            pass
    return type(mod).__name__


def signature_of(call: str) -> inspect.Signature | None:
    """The signature of a ``torch.nn.init`` function, if ``call`` names one."""
    fn = getattr(nn.init, call, None)
    return inspect.signature(fn) if fn is not None and call in INIT_FUNCTIONS else None
