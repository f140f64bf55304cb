"""Tensor primitives every layer shares: dtype names, raw bytes, the bitwise hash, statistics.

torch is imported inside each function, so that modules reading or diffing snapshots can import
these names without paying for torch.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@cache
def _dtypes() -> dict[str, torch.dtype]:
    import torch

    return {
        str(d).replace("torch.", ""): d
        for d in (
            torch.float64,
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint8,
            torch.bool,
            torch.complex64,
            torch.complex128,
        )
    }


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``float32``."""
    return str(dtype).replace("torch.", "")


def parse_dtype(name: str) -> torch.dtype:
    """``float32`` → ``torch.float32``; raise ValueError for unknown names."""
    try:
        return _dtypes()[name.replace("torch.", "")]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; one of {', '.join(_dtypes())}") from None


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a tensor (moved to CPU and made contiguous if needed)."""
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.numel() == 0:
        return memoryview(b"")
    flat = t.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    flat = flat.view(torch.uint8)
    try:
        return memoryview(flat.numpy())  # zero-copy
    except RuntimeError:
        # "Numpy is not available": a torch built against NumPy 1.x (before 2.3) running
        # with NumPy 2. Copy the bytes out instead of failing the user's build.
        return memoryview(ctypes.string_at(flat.data_ptr(), flat.numel()))


def tensor_hash(t: torch.Tensor) -> str:
    """``sha256:<hex>`` of a tensor's raw bytes: the bitwise identity of its values."""
    return "sha256:" + hashlib.sha256(tensor_bytes(t)).hexdigest()


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def tensor_stats(t: torch.Tensor) -> dict[str, Any]:
    """Summary statistics (numel, mean, std, min, max, nan, inf, zeros) of a tensor's values."""
    import torch

    t = t.detach()
    n = t.numel()
    out: dict[str, Any] = {"numel": n}
    if n == 0:
        return out
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype in (torch.float16, torch.bfloat16) or not t.is_floating_point():
        x = t.to(torch.float64 if not t.is_floating_point() else torch.float32)
    else:
        x = t
    nan = inf = 0
    if x.is_floating_point():
        # min/max are finite only when no value is NaN or ±inf: count those only then (cheap).
        lo, hi = torch.aminmax(x)
        if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            nan = int(torch.isnan(x).sum())
            inf = int(torch.isinf(x).sum())
    finite = x[torch.isfinite(x)] if (nan or inf) else x
    out.update(nan=nan, inf=inf, zeros=n - int(torch.count_nonzero(x)))
    if finite.numel():
        if nan or inf or not x.is_floating_point():
            lo, hi = torch.aminmax(finite)  # else the first pass's min and max are these
        std, mean = (0.0, float(lo)) if bool(lo == hi) else _std_mean(finite)
        out.update(mean=_num(mean), std=_num(std), min=_num(float(lo)), max=_num(float(hi)))
    return out


#: Elements per chunk of :func:`_std_mean`: its float64 copy (512 KiB) stays in the cache.
_STATS_CHUNK = 1 << 16


def _std_mean(x: torch.Tensor) -> tuple[float, float]:
    """Population standard deviation and mean in float64: two passes over cache-sized chunks.

    Double precision is more exact than ``torch.std_mean``'s float32 Welford and, chunked,
    faster: on 58.7 M float32 values on one core 0.07 s against 0.33 s. A tensor of one chunk
    or less takes ``std_mean`` in float64 (one op: less overhead than the loop).
    """
    import torch

    n = x.numel()
    if n <= _STATS_CHUNK:
        std, mean = torch.std_mean(x.reshape(-1).double(), correction=0)
        return float(std), float(mean)
    chunks = x.reshape(-1).split(_STATS_CHUNK)
    mean = sum(float(c.double().sum()) for c in chunks) / n
    squares = 0.0
    for c in chunks:
        d = c.double()
        d -= mean
        squares += float(torch.dot(d, d))
    return math.sqrt(squares / n), mean




#: Tensors of at least this many bytes are digested on the worker threads; smaller ones cost
#: less to digest inline than to hand off.
DIGEST_AHEAD_FROM = 1 << 20


#: How much nicer (lower priority) the digest workers run than the thread that makes tensors.
WORKER_NICENESS = 10


def _yield_to_caller() -> None:
    """Lower this worker thread's priority, so that the (serial) tensor maker keeps its core.

    On two cores a maker and two digest workers are three busy threads: at equal priority each
    gets two thirds of a core and the maker, the critical path, slows down by a third. Linux
    applies ``setpriority`` to the one thread (and the threads it starts, such as torch's
    intra-op pool); where that is not possible, the workers keep their priority.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICENESS)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not allowed
        pass


class DigestPipeline:
    """Hash and summarize tensors on worker threads while the caller makes the next ones.

    ``put(name, tensor)`` hands a tensor over (the caller must not modify it afterwards) and
    blocks while more than ``max_bytes`` wait or are being digested, so memory stays bounded:
    the caller makes tensor k+1 (torch ops release the GIL) while one worker hashes tensor k
    (hashlib releases the GIL) and another computes its statistics. ``close()`` waits and
    returns ``{name: (hash, stats)}``: exactly :func:`tensor_hash` and :func:`tensor_stats`.
    ``on_done(done, nbytes)`` is called after each tensor, from whichever thread finished it.
    """

    def __init__(
        self,
        max_bytes: int = 1 << 28,
        on_done: Callable[[int, int], None] | None = None,
    ) -> None:
        self.digests: dict[str, tuple[str, dict[str, Any]]] = {}
        self._max = max_bytes
        self._on_done = on_done
        self._waiting = 0  # bytes handed over and not yet digested
        self._done = self._nbytes = 0
        self._errors: list[BaseException] = []
        self._cv = threading.Condition()
        self._pool = ThreadPoolExecutor(
            2, thread_name_prefix="initaudit-digest", initializer=_yield_to_caller
        )

    def put(self, name: str, t: torch.Tensor) -> None:
        """Digest ``t`` as ``name``: on the workers when large, else here and now."""
        n = t.numel() * t.element_size()
        if n < DIGEST_AHEAD_FROM:
            self._finish(name, tensor_hash(t), tensor_stats(t), n)
            return
        with self._cv:
            while self._waiting and self._waiting + n > self._max and not self._errors:
                self._cv.wait()
            self._raise()
            self._waiting += n
        # The workers reach the tensor only through `box`, emptied before the tensor counts as
        # done: once `put` may go on, nothing here holds its memory (a storage pool may reuse it).
        box = [t]
        del t
        hashed = self._pool.submit(lambda: tensor_hash(box[0]))
        stats = self._pool.submit(lambda: tensor_stats(box[0]))
        left = [2]

        def both(_: Future[Any]) -> None:
            with self._cv:
                left[0] -= 1
                if left[0]:
                    return
                box.clear()
                self._waiting -= n
                self._cv.notify_all()
                error = hashed.exception() or stats.exception()
                if error is not None:
                    self._errors.append(error)
                    return
            self._finish(name, hashed.result(), stats.result(), n)

        hashed.add_done_callback(both)
        stats.add_done_callback(both)

    def close(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Wait for every tensor handed over; return the digests (re-raise a worker error)."""
        self._pool.shutdown(wait=True)
        self._raise()
        return self.digests

    def _raise(self) -> None:
        if self._errors:
            raise self._errors[0]

    def _finish(self, name: str, digest: str, stats: dict[str, Any], n: int) -> None:
        with self._cv:
            self.digests[name] = (digest, stats)
            self._done += 1
            self._nbytes += n
            done, nbytes = self._done, self._nbytes
        if self._on_done is not None:
            self._on_done(done, nbytes)
