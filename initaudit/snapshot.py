"""Freeze a traced build into a snapshot, and read snapshots back safely.

A snapshot is a JSON manifest (format version, target, seed, provenance, per-tensor hash,
statistics, recipe and events) and, beside it, a safetensors file of the values. Neither format
can run code when read. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import schema
from .errors import OutputError, SnapshotError
from .schema import FORMAT, FORMAT_VERSION, Manifest, TensorEntry

# Reading and diffing snapshots must not pay for importing torch (~1.5 s): torch, the tracer
# and provenance are imported inside the functions that freeze or touch values.
if TYPE_CHECKING:
    import torch

    from .target import Target
    from .trace import TensorTrace, Trace

#: Tensors of at least this many bytes are hashed on a second thread while their statistics
#: are computed; smaller ones cost less to hash inline than to hand off.
_HASH_AHEAD_FROM = 1 << 20


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
        std, mean = torch.std_mean(finite.reshape(-1), correction=0)
        if nan or inf or not x.is_floating_point():
            lo, hi = torch.aminmax(finite)  # else the first pass's min and max are these
        out.update(
            mean=_num(float(mean)), std=_num(float(std)), min=_num(float(lo)), max=_num(float(hi))
        )
    return out


@dataclass
class Snapshot:
    """A loaded (or freshly frozen) snapshot: the manifest, and the values when present."""

    manifest: dict[str, Any]
    path: Path | None = None
    values: dict[str, torch.Tensor] | None = None
    values_path: Path | None = None

    @property
    def tensors(self) -> list[dict[str, Any]]:
        """The per-tensor entries, in RNG/build order."""
        return self.manifest["tensors"]

    @property
    def environment(self) -> dict[str, Any]:
        """The provenance block: torch version, CPU capability, device, dtype…"""
        return self.manifest["provenance"]

    @property
    def target(self) -> dict[str, Any]:
        """The target block: spec, name, slug and keyword arguments."""
        return self.manifest["target"]

    def has_values(self) -> bool:
        """Whether tensor values are available (in memory or in a safetensors file)."""
        return self.values is not None or self.values_path is not None

    def load_value(self, name: str) -> torch.Tensor:
        """The value of one tensor (a primary name), read lazily and hash-checked."""
        return next(self.iter_values([name]))[1]

    def iter_values(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, value)`` for each name, read from the values file once and hash-checked."""
        entries = {t["name"]: t for t in self.tensors}
        for name in names:
            if name not in entries:
                raise SnapshotError(f"{self.label}: no tensor named {name!r}")
        if self.values is not None:
            for name in names:
                yield name, self.values[name]
            return
        if self.values_path is None:
            raise SnapshotError(f"{self.label} holds digests only, no values")
        from safetensors import SafetensorError, safe_open

        check_values_file(self)  # again: a regular file still, and still the one described
        try:
            with safe_open(str(self.values_path), framework="pt") as f:
                for name in names:
                    value = f.get_tensor(name)
                    entry = entries[name]
                    if (
                        list(value.shape) != list(entry["shape"])
                        or dtype_name(value.dtype) != entry["dtype"]
                    ):
                        raise SnapshotError(
                            f"{self.values_path}: {name!r} is stored as "
                            f"{dtype_name(value.dtype)} {list(value.shape)}, the manifest says "
                            f"{entry['dtype']} {entry['shape']} (the file was modified or corrupted)"
                        )
                    if tensor_hash(value) != entry["hash"]:
                        raise SnapshotError(
                            f"{self.values_path}: values of {name!r} do not match the "
                            "manifest's hash (the file was modified or corrupted)"
                        )
                    yield name, value
        except (SafetensorError, OSError) as exc:
            raise SnapshotError(f"cannot read values from {self.values_path}: {exc}") from None

    @property
    def label(self) -> str:
        """How to name this snapshot in messages."""
        return str(self.path) if self.path else f"snapshot of {self.target.get('name')}"


# --------------------------------------------------------------------------- freezing


def _event_json(ev: Any) -> dict[str, Any]:
    from . import provenance

    out = ev.to_json()
    out["site"] = provenance.portable_site(ev.site)
    return out


def _init_of(events: list[Any]) -> tuple[str, Any | None]:
    """The origin and the event of the readable call that last set a tensor's whole value."""
    value_events = [e for e in events if e.kind not in ("alloc",) and not e.partial]
    if not value_events:
        if any(e.kind == "alloc" for e in events):
            return "uninitialized", None
        return ("unknown", None)
    last = value_events[-1]
    if last.kind == "copy":
        # A copy (deepcopy, clone, .to) carries its source's init: show that, keep the copy's
        # origin only when nothing wrote the source.
        writes = [e for e in value_events if e.kind != "copy"]
        if writes:
            return writes[-1].origin, writes[-1]
    return last.origin, last


def _library_entry(ev: Any | None) -> dict[str, Any] | None:
    """``{name, version, function, site}`` of the library code that set a value, or None."""
    if ev is None or getattr(ev, "library", None) is None:
        return None
    from .trace import library_version

    return {
        "name": ev.library,
        "version": library_version(ev.library),
        "function": ev.function,
        "site": ev.lib_site,
    }


def tensor_entry(
    tt: TensorTrace,
    model: torch.nn.Module,
    order: int,
    *,
    with_events: bool = True,
    digest: tuple[str, dict[str, Any]] | None = None,
) -> TensorEntry:
    """The manifest entry of one traced tensor: identity, hash, stats, recipe, provenance."""
    from . import provenance
    from .recipes import describe_call
    from .trace import module_type_of

    t = tt.tensor
    events = tt.events
    origin, init_ev = _init_of(events)
    random_events = [e for e in events if e.rng]
    entry: TensorEntry = {
        "name": tt.name,
        "order": order,
        "kind": tt.kind,
        "persistent": tt.persistent,
        "module": module_type_of(model, tt.name),
        "shape": list(t.shape),
        "dtype": dtype_name(t.dtype),
        "device": str(t.device),
        "hash": digest[0] if digest else tensor_hash(t),
        "stats": digest[1] if digest else tensor_stats(t),
        "origin": origin,
        "site": provenance.portable_site(init_ev.site) if init_ev else None,
        "scope": init_ev.scope if init_ev else None,
        "init": (
            {
                "call": init_ev.call,
                "args": init_ev.args,
                "text": describe_call(init_ev.call, init_ev.args),
            }
            if init_ev
            else None
        ),
        "library": _library_entry(init_ev),
        "rng_before": random_events[0].rng_before if random_events else None,
        "rng": sorted({e.rng for e in random_events}) or None,
        "draws": sum(e.numel for e in random_events),
        "aliases": list(tt.aliases),
    }
    if with_events:
        entry["events"] = [_event_json(e) for e in events]
    return entry


def _from_outside(entry: dict[str, Any]) -> bool:
    """Whether a tensor's value came from outside the traced ops (no events, or external data
    copied in last: ``set_``/``copy_`` from a tensor no traced op made)."""
    events = [e for e in entry.get("events") or [] if e["kind"] != "alloc"]
    if not events:
        return entry["origin"] == "unknown"
    return events[-1]["kind"] in ("copy", "external") and any(
        e["kind"] == "external" for e in events
    )


def _mark_loaded(model: Any, entries: list[dict[str, Any]]) -> None:
    """Origin ``loaded`` (and ``loaded: {file, key}``) for untraced tensors a checkpoint holds."""
    from .loaded import loaded_tensors

    untraced = [e for e in entries if _from_outside(e)]
    for name, where in loaded_tensors(model, untraced).items():
        entry = next(e for e in untraced if e["name"] == name)
        entry["origin"] = "loaded"
        entry["loaded"] = where


def build_manifest(
    target: Target,
    trace: Trace,
    seed: int,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
    digests: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> Manifest:
    """The manifest of a traced build (hashes and statistics computed tensor by tensor).

    ``on_tensor(done, total, nbytes)`` is called after each tensor with the bytes hashed so far.
    """
    from . import provenance

    entries: list[TensorEntry] = []
    total = len(trace.tensors)
    nbytes = 0
    with ThreadPoolExecutor(1) as pool:
        # Hash large tensors on a second thread (hashlib releases the GIL) while this one
        # computes their statistics: one pass over the model's bytes' worth of time, not two.
        ahead = (
            {
                tt.name: pool.submit(tensor_hash, tt.tensor)
                for tt in trace.tensors
                if tt.tensor.numel() * tt.tensor.element_size() >= _HASH_AHEAD_FROM
            }
            if digests is None
            else {}
        )
        for i, tt in enumerate(trace.tensors):
            if digests is not None:
                digest: tuple[str, dict[str, Any]] | None = digests[tt.name]
            elif tt.name in ahead:
                stats = tensor_stats(tt.tensor)
                digest = (ahead.pop(tt.name).result(), stats)
            else:
                digest = None
            entries.append(tensor_entry(tt, trace.model, i, digest=digest))
            if on_tensor is not None:
                nbytes += tt.tensor.numel() * tt.tensor.element_size()
                on_tensor(i + 1, total, nbytes)
    _mark_loaded(trace.model, entries)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "target": {
            "spec": target.spec,
            **target.identity(),
        },
        "seed": seed,
        "provenance": {
            **provenance.capture(device, dtype),
            **provenance.code_provenance(trace.files, target.source_file),
        },
        "rng": {
            "torch_after": trace.rng_after,
            "drew_from_python_random": trace.drew_from.get("python", False),
            "drew_from_numpy": trace.drew_from.get("numpy", False),
            "private_generators": trace.private_generators,
        },
        "orphan_draws": [_event_json(e) for e in trace.orphan_draws()],
        "tensors": entries,
        "values": None,
    }


def freeze(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    on_event: Callable[[int], None] | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
    example_input: tuple[int, ...] | None = None,
) -> tuple[Snapshot, Trace]:
    """Trace a seeded build of ``target`` and return its in-memory snapshot and trace.

    ``example_input`` (a shape) runs one forward on zeros after the build, so lazy modules exist.
    """
    from .target import with_example_input
    from .trace import trace_build

    build = with_example_input(target.build, example_input)
    trace = trace_build(build, seed, device=device, dtype=dtype, on_event=on_event)
    manifest = build_manifest(target, trace, seed, device=device, dtype=dtype, on_tensor=on_tensor)
    if example_input is not None:
        manifest["target"]["example_input"] = list(example_input)
    values = {tt.name: tt.tensor for tt in trace.tensors}
    return Snapshot(manifest=manifest, values=values), trace


# --------------------------------------------------------------------------- writing


def default_filename(manifest: dict[str, Any]) -> str:
    """``torch-<version>[-<device>][-<dtype>]-seed<seed>.json``: the name carries the torch version."""
    env = manifest["provenance"]
    parts = [f"torch-{env['torch']}"]
    if env.get("device", "cpu") != "cpu":
        parts.append(env["device"].replace(":", ""))
    if env.get("default_dtype", "float32") != "float32":
        parts.append(env["default_dtype"])
    parts.append(f"seed{manifest['seed']}")
    return "-".join(parts) + ".json"


def default_path(manifest: dict[str, Any], root: Path = Path("snapshots")) -> Path:
    """``snapshots/<model>/<default_filename>``."""
    return root / manifest["target"]["slug"] / default_filename(manifest)


# --------------------------------------------------------------------------- file layout
#
# A snapshot on disk is a pair: ``NAME.json`` (the manifest) and the values file it names in
# ``values.file``, ``NAME.<first 16 hex of its sha256>.safetensors``. Content-addressed values
# never overwrite another snapshot's values, and they are renamed into place before the manifest
# that names them: at every instant the manifest on disk names a complete values file, whatever
# interrupts a write. Writers of one folder hold an exclusive lock on it (readers a shared one),
# and a write removes what an interrupted one left behind: stale temp files of that NAME and
# values files of that NAME that the manifest no longer names. Manifests written before
# content-addressed names (``values.file`` = ``NAME.safetensors``) read as before.

#: Longest name stem kept verbatim in the names derived from a manifest's (values and temp
#: files); a longer one is cut and suffixed with its hash, so derived names stay under 255 bytes.
_STEM_BYTES = 200
#: Largest manifest a reader accepts (a bound on memory and time, not a format limit).
MAX_MANIFEST_BYTES = 256 << 20
#: Largest safetensors header a reader accepts (safetensors' own limit).
MAX_VALUES_HEADER_BYTES = 100_000_000
_HEX_IN_NAME = 16
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: Manifest dtype → (safetensors dtype code, bytes per element): checked without importing torch.
_ST_CODES = {
    "float64": ("F64", 8),
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
    "int64": ("I64", 8),
    "int32": ("I32", 4),
    "int16": ("I16", 2),
    "int8": ("I8", 1),
    "uint8": ("U8", 1),
    "bool": ("BOOL", 1),
    "complex64": ("C64", 8),
}


def _shorten(name: str) -> str:
    """``name``, or when longer than ``_STEM_BYTES`` bytes its start plus ``~`` and a hash."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= _STEM_BYTES:
        return name
    head = raw[: _STEM_BYTES - 17].decode("utf-8", "ignore")  # cut on a character boundary
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}"


def _stem(manifest_path: Path) -> str:
    name = Path(manifest_path).name
    return _shorten(name[: -len(".json")] if name.endswith(".json") else name)


def values_name(manifest_path: Path, sha256: str) -> str:
    """``NAME.<first 16 hex of sha256>.safetensors``: the values file a manifest names."""
    digest = sha256.removeprefix("sha256:")[:_HEX_IN_NAME]
    return f"{_stem(manifest_path)}.{digest}.safetensors"


def values_path_for(manifest_path: Path) -> Path | None:
    """The values file the manifest at ``manifest_path`` names (None when it is digest-only)."""
    return read(manifest_path, check_values=False).values_path


def check_manifest_path(path: Path) -> None:
    """Refuse a manifest path whose name does not end in ``.json`` (e.g. ``x.safetensors``)."""
    name = Path(path).name
    if not name.endswith(".json") or name == ".json":
        raise OutputError(
            f"{path}: a snapshot manifest's name must end in .json (its values go beside it "
            f"as NAME.<hash>.safetensors)"
            + ("; this name is the values files' suffix" if name.endswith(".safetensors") else "")
        )


@contextmanager
def _folder_lock(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a lock on ``folder`` (flock on the folder itself: no lock file is left behind)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError as exc:
        if exclusive:
            raise OutputError(f"cannot lock {folder}: {exc.strerror or exc}") from None
        yield  # a reader that cannot open the folder reads without the lock
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:
            if not exclusive:
                yield
                return
            # File systems that lock only files opened for writing (NFS): a lock file.
            os.close(fd)
            fd = -1
            try:
                fd = os.open(folder / ".initaudit.lock", os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o666)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise OutputError(f"cannot lock {folder}: {exc.strerror or exc}") from None
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def _temp_pattern(stem: str) -> re.Pattern[str]:
    # ``.<stem>.json.<8 chars>.tmp`` and ``.<stem>.safetensors.<8 chars>.tmp``: what this writer
    # and earlier initaudit versions (mkstemp) name their temp files.
    return re.compile(rf"\.{re.escape(stem)}\.(?:json|safetensors)\.[a-z0-9_]{{8}}\.tmp")


def _new_temp(folder: Path, stem: str, kind: str) -> Path:
    for _ in range(100):
        tmp = folder / f".{stem}.{kind}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp name in {folder}")  # pragma: no cover


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        _fsync(folder)
    except OSError:  # pragma: no cover - some file systems cannot fsync a folder
        pass


def _referenced_file(path: Path) -> str | None:
    """The values file the manifest now at ``path`` names, if it can be read (else None)."""
    try:
        vinfo = _parse_manifest(path, path.parent, path).get("values")
        return Path(vinfo["file"]).name if isinstance(vinfo, dict) else None
    except (SnapshotError, TypeError, KeyError, AttributeError):
        return None


def _clean(
    folder: Path,
    stem: str,
    *,
    values: bool = True,
    keep: str | None = None,
    legacy: str | None = None,
) -> None:
    """Remove stale temp files of ``stem``; with ``values`` also its values files other than
    ``keep``, and ``legacy`` (the old-layout values file the replaced manifest named)."""
    temps = _temp_pattern(stem)
    named = re.compile(rf"{re.escape(stem)}\.[0-9a-f]{{{_HEX_IN_NAME}}}\.safetensors")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name == keep:
            continue
        if temps.fullmatch(name) or (values and (named.fullmatch(name) or name == legacy)):
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass
            except OSError:  # a leftover that cannot be removed now: the next write retries
                pass


def _commit(
    path: Path,
    manifest: dict[str, Any],
    put_values: Callable[[Path], str] | None,
    *,
    force: bool,
) -> Path | None:
    """Write a pair under the folder's lock: values (``put_values(tmp)`` returns their sha256)
    renamed into place first, then the manifest naming them; then remove leftovers."""
    folder = path.parent
    stem = _stem(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    mode = 0o666 & ~_umask()
    with _folder_lock(folder, exclusive=True):
        if not force and os.path.lexists(path):
            raise OutputError(f"{path} exists; pass --force to overwrite it")
        _clean(folder, stem, values=False)  # stale temp files: no writer holds the lock
        vpath: Path | None = None
        created: Path | None = None
        # An old-layout values file (NAME.safetensors) is removed only when the manifest being
        # replaced named it: a file of that name may be something else.
        legacy_name = Path(path.name).with_suffix(".safetensors").name
        legacy = None
        if os.path.lexists(folder / legacy_name) and _referenced_file(path) == legacy_name:
            legacy = legacy_name
        tmp: Path | None = None
        try:
            if put_values is not None:
                tmp = _new_temp(folder, stem, "safetensors")
                sha = put_values(tmp)
                _fsync(tmp)
                os.chmod(tmp, mode)
                vpath = folder / values_name(path, sha)
                if not os.path.lexists(vpath):
                    created = vpath
                os.replace(tmp, vpath)
                manifest["values"] = {"file": vpath.name, "sha256": sha}
            else:
                manifest["values"] = None
            text = manifest_text(manifest)
            tmp = _new_temp(folder, stem, "json")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            if created is not None:  # new values no manifest names: not left behind
                created.unlink(missing_ok=True)
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        except BaseException:
            if created is not None:
                created.unlink(missing_ok=True)
            raise
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        _fsync_folder(folder)
        _clean(folder, stem, keep=vpath.name if vpath else None, legacy=legacy)
    return vpath


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{_shorten(path.name)}.", suffix=".tmp", dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as stable, human-diffable JSON: a line per top-level key and per tensor.

    ``json.dumps(indent=…)`` runs the pure-Python encoder (≈ 2 s for 4,000 tensors with their
    events); compact dumps of each part use the C encoder, and one tensor per line still makes
    a drifted tensor one changed line in a code review.
    """

    def dump(value: Any) -> str:
        return json.dumps(value, allow_nan=False)

    parts = []
    for key, value in manifest.items():
        if isinstance(value, list) and value:
            text = "[\n" + ",\n".join("  " + dump(v) for v in value) + "\n ]"
        else:
            text = dump(value)
        parts.append(f" {dump(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write(
    snapshot: Snapshot, path: Path, *, digest_only: bool = False, force: bool = False
) -> Path:
    """Write a snapshot's manifest (and values unless ``digest_only``) to ``path`` as one unit."""
    path = Path(path)
    check_manifest_path(path)
    manifest = dict(snapshot.manifest)
    put_values: Callable[[Path], str] | None = None
    if not digest_only:
        if snapshot.values is None:
            raise OutputError("this snapshot holds no values to write")
        tensors = {
            t["name"]: snapshot.values[t["name"]].detach().cpu().contiguous()
            for t in snapshot.tensors
        }
        from .stream import write_safetensors

        def put_values(tmp: Path) -> str:
            return write_safetensors(tensors, tmp, {"format": FORMAT})

    vpath = _commit(path, manifest, put_values, force=force)
    snapshot.manifest = manifest
    snapshot.path = path
    snapshot.values_path = vpath
    return path


def move(snapshot: Snapshot, dest: Path) -> Path:
    """Move a snapshot read from disk (manifest and values) to ``dest`` as one unit, replacing
    what is there; the values' sha256 is checked on the way."""
    dest = Path(dest)
    check_manifest_path(dest)
    src_values = snapshot.values_path
    recorded = (snapshot.manifest.get("values") or {}).get("sha256")
    manifest = dict(snapshot.manifest)
    put_values: Callable[[Path], str] | None = None
    if src_values is not None:

        def put_values(tmp: Path) -> str:
            try:
                os.replace(src_values, tmp)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.copyfile(src_values, tmp)
            actual = file_sha256(tmp)
            if recorded and actual != recorded:
                raise SnapshotError(
                    f"{src_values} does not match the sha256 its manifest records "
                    "(the file was modified or corrupted)"
                )
            return actual

    _commit(dest, manifest, put_values, force=True)
    if snapshot.path is not None and snapshot.path != dest:
        snapshot.path.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------- reading


def _kind(mode: int) -> str:
    for test, text in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return text
    return "not a regular file"


def _inside(path: Path, folder: Path) -> Path:
    """``path``, resolved when it is a symbolic link that stays inside ``folder``."""
    if not os.path.islink(path):
        return path
    real = path.resolve()
    base = folder.resolve()
    if real.parent != base and base not in real.parents:
        raise SnapshotError(
            f"{path} is a symbolic link to {real}, outside {folder}; initaudit follows a "
            "symbolic link out of a snapshot folder only when you name it"
        )
    return real


def _open_regular(path: Path, what: str, *, follow: bool) -> tuple[int, int]:
    """Open a regular file without blocking (a FIFO or device is refused); ``(fd, size)``."""
    flags = os.O_RDONLY | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SnapshotError(f"{what} {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise SnapshotError(f"{path} is a symbolic link initaudit does not follow") from None
        raise SnapshotError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode) and what == "snapshot":
            raise SnapshotError(f"{path} is a folder, not a snapshot file")
        raise SnapshotError(
            f"{path} is {_kind(st.st_mode)}, not a regular file; initaudit reads a {what} only "
            "from a regular file"
        )
    return fd, st.st_size


def _pread(fd: int, n: int, offset: int) -> bytes:
    parts = []
    while n > 0:
        chunk = os.pread(fd, min(n, 1 << 24), offset)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _parse_manifest(path: Path, folder: Path | None, label: Path) -> Any:
    """The parsed JSON of the manifest at ``path`` (regular file, size-limited)."""
    real = _inside(path, folder) if folder is not None else path
    fd, size = _open_regular(real, "snapshot", follow=folder is None)
    try:
        if size > MAX_MANIFEST_BYTES:
            raise SnapshotError(
                f"{label} is {size:,} bytes; initaudit reads manifests of up to "
                f"{MAX_MANIFEST_BYTES:,} bytes"
            )
        raw = _pread(fd, MAX_MANIFEST_BYTES + 1, 0)
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {label}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise SnapshotError(f"{label} grew past {MAX_MANIFEST_BYTES:,} bytes while being read")
    if raw[:2] == b"PK" or raw[:1] == b"\x80":
        raise SnapshotError(
            f"{label} is a pickle/torch.save file, not an initaudit snapshot; "
            "initaudit never unpickles files"
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SnapshotError(f"{label} is not valid JSON ({exc}); is it truncated?") from None


def read(
    path: Path | str, *, within: Path | str | None = None, check_values: bool = True
) -> Snapshot:
    """Read and validate a snapshot manifest and check its values file's structure.

    Only regular files are opened. ``within``: the folder a scan found ``path`` in; a symbolic
    link out of it is refused (a path the user names is followed). Values are read lazily and
    hash-checked; ``check_values=False`` skips the structural check of the values file (the
    caller runs :func:`check_values_file` on the snapshot it relies on).
    """
    path = Path(path)
    with _folder_lock(path.parent, exclusive=False):
        manifest = _parse_manifest(path, Path(within) if within is not None else None, path)
        validate(manifest, str(path))
        vinfo = manifest.get("values")
        vpath = None
        if vinfo:
            try:
                vpath = path.parent / Path(vinfo["file"]).name
            except (TypeError, KeyError):
                raise SnapshotError(f"{path}: 'values.file' is not a file name") from None
        snap = Snapshot(manifest=manifest, path=path, values_path=vpath)
        if check_values:
            check_values_file(snap)
    return snap


def check_values_file(snapshot: Snapshot) -> None:
    """Check a snapshot's values file without reading a value: a regular file whose
    safetensors header parses, lists the manifest's tensors (names, dtypes, shapes, offsets)
    and accounts for the file's size exactly."""
    vpath = snapshot.values_path
    if vpath is None:
        return
    folder = snapshot.path.parent if snapshot.path is not None else vpath.parent
    if not os.path.lexists(vpath):
        raise SnapshotError(f"{snapshot.label}: its values file {vpath} is missing")
    fd, size = _open_regular(_inside(vpath, folder), "values file", follow=False)
    try:
        head = _pread(fd, 8, 0)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 0 or n > MAX_VALUES_HEADER_BYTES or 8 + n > size:
            raise SnapshotError(
                f"{vpath}: truncated or corrupted: {size:,} bytes, too short for the "
                "safetensors header it starts with"
            )
        raw = _pread(fd, n, 8)
    except OSError as exc:
        raise SnapshotError(f"cannot read {vpath}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SnapshotError(f"{vpath}: corrupted: its safetensors header is not JSON") from None
    _match_header(vpath, header, snapshot, size, 8 + n)


def _match_header(
    vpath: Path, header: Any, snapshot: Snapshot, size: int, data_start: int
) -> None:
    def bad(text: str) -> SnapshotError:
        return SnapshotError(f"{vpath}: {text} (the file was modified or corrupted)")

    if not isinstance(header, dict):
        raise bad("its safetensors header is not a JSON object")
    header = {k: v for k, v in header.items() if k != "__metadata__"}
    expected: dict[str, tuple[str, list[int], int]] = {}
    for i, t in enumerate(snapshot.tensors):
        try:
            name, dtype, shape = t["name"], t["dtype"], t["shape"]
            code, itemsize = _ST_CODES[dtype]
            if not (
                isinstance(name, str)
                and isinstance(shape, list)
                and all(type(d) is int and d >= 0 for d in shape)
            ):
                raise TypeError
        except (KeyError, TypeError):
            raise SnapshotError(
                f"{snapshot.label}: tensors[{i}] has no valid name, dtype and shape to check "
                "its values file against"
            ) from None
        expected[name] = (code, shape, math.prod(shape) * itemsize)
    missing = [n for n in expected if n not in header]
    if missing:
        raise bad(f"holds no tensor {missing[0]!r}, which the manifest lists")
    extra = [n for n in header if n not in expected]
    if extra:
        raise bad(f"holds a tensor {extra[0]!r} that the manifest does not list")
    spans = []
    for name, (code, shape, nbytes) in expected.items():
        info = header[name]
        if not isinstance(info, dict):
            raise bad(f"its header entry of {name!r} is not an object")
        dt, shp, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dt != code or not isinstance(shp, list) or [type(d) for d in shp] != [int] * len(shp):
            raise bad(f"stores {name!r} as {dt} {shp}, the manifest says {code} {shape}")
        if shp != shape:
            raise bad(f"stores {name!r} as {dt} {shp}, the manifest says {code} {shape}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0]
            and offsets[1] - offsets[0] == nbytes
        ):
            raise bad(f"its data offsets of {name!r} do not fit {nbytes:,} bytes")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise bad(f"its data of {name!r} overlaps another tensor's or leaves a gap")
        end = stop
    if data_start + end != size:
        what = "truncated" if size < data_start + end else "longer than its header says"
        raise bad(f"{what}: {size:,} bytes, its header and tensors make {data_start + end:,}")


def validate(manifest: Any, label: str) -> None:
    """Check that a parsed JSON document is a snapshot of a format this version reads."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{label} is JSON but not an initaudit snapshot")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{label} has snapshot format version {schema.got(version)}; "
            f"this initaudit reads version {FORMAT_VERSION}",
            hint="upgrade initaudit, or re-freeze the snapshot",
        )
    try:
        schema.validate_manifest(manifest)
    except schema.SchemaViolation as exc:
        raise SnapshotError(f"{label}: {exc}") from None



def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a whole regular file, read in chunks."""
    h = hashlib.sha256()
    fd, _ = _open_regular(Path(path), "file", follow=True)
    try:
        for chunk in iter(lambda: os.read(fd, 1 << 24), b""):
            h.update(chunk)
    finally:
        os.close(fd)
    return "sha256:" + h.hexdigest()


def verify_values(snapshot: Snapshot) -> Iterator[str]:
    """Hash-check every stored value against the manifest; yield each name as it passes.

    The values file's own sha256, when the manifest records one, is checked first: it also
    covers the file's header and anything stored beside the tensors.
    """
    info = snapshot.manifest.get("values") or {}
    if snapshot.values is None and snapshot.values_path is not None and info.get("sha256"):
        try:
            actual = file_sha256(snapshot.values_path)
        except OSError as exc:
            raise SnapshotError(f"cannot read {snapshot.values_path}: {exc}") from None
        if actual != info["sha256"]:
            raise SnapshotError(
                f"{snapshot.values_path} does not match the sha256 its manifest records "
                "(the file was modified or corrupted)"
            )
    for name, _ in snapshot.iter_values([t["name"] for t in snapshot.tensors]):
        yield name
