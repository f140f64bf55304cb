"""The context a build runs in: seeds, default device and dtype, and the RNG state's digest."""

from __future__ import annotations

import gc
import hashlib
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from initaudit.tensors import tensor_bytes


def rng_digest(generator: torch.Generator | None = None) -> str:
    """A short digest of a generator's state (the global CPU generator by default)."""
    state = (generator if generator is not None else torch.default_generator).get_state()
    try:  # the state is a contiguous CPU uint8 tensor; this runs once per random op
        return _blake2b(state.numpy(), digest_size=8).hexdigest()  # zero-copy
    except RuntimeError:  # torch before 2.3 under NumPy 2: the copying path
        return _blake2b(tensor_bytes(state), digest_size=8).hexdigest()


_blake2b = hashlib.blake2b


@contextmanager
def young_gc() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's passes until the end.

    A traced build allocates its events and records as it goes, and each allocation counts
    toward the next collection; without this, every full collection walks the whole
    interpreter (torch's and the libraries' objects) again. Reference counting still frees
    everything at once, and cycles made during the build are still collected.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def generator_for(device: torch.device | None) -> torch.Generator | None:
    """The default generator a random op on ``device`` draws from (None: no known one)."""
    if device is None or device.type == "cpu" or device.type == "meta":
        return torch.default_generator
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[idx]
    return None



@contextmanager
def seeded(seed: int) -> Iterator[dict[str, Any]]:
    """Seed torch, Python's ``random`` and NumPy (when installed); report which were drawn from."""
    np = numpy_module()
    torch.manual_seed(seed)
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % 2**32)
    before_py = random.getstate()
    before_np = np.random.get_state()[1].copy() if np is not None else None
    before_np_pos = np.random.get_state()[2] if np is not None else None
    drew: dict[str, Any] = {}
    try:
        yield drew
    finally:
        drew["python"] = random.getstate() != before_py
        if np is not None:
            state = np.random.get_state()
            drew["numpy"] = bool(state[2] != before_np_pos or not (state[1] == before_np).all())
        else:
            drew["numpy"] = False


def numpy_module() -> Any:
    """NumPy, when it is installed (None otherwise)."""
    if "numpy" in sys.modules:
        return sys.modules["numpy"]
    try:
        import numpy
    except ImportError:
        return None
    return numpy


@contextmanager
def build_context(device: str | None, dtype: torch.dtype | None) -> Iterator[None]:
    """Build under a default device and dtype, restoring both afterwards."""
    old_dtype = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        if device is not None and device != "cpu":
            with torch.device(device):
                yield
        else:
            yield
    finally:
        torch.set_default_dtype(old_dtype)
