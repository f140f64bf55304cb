"""Freeze a traced build into a snapshot, and read snapshots back safely.

A snapshot is a JSON manifest (format version, target, seed, provenance, per-tensor hash,
statistics, recipe and events) and, beside it, a safetensors file of the values. Neither format
can run code when read. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OutputError, SnapshotError

# Reading and diffing snapshots must not pay for importing torch (~1.5 s): torch, the tracer
# and provenance are imported inside the functions that freeze or touch values.
if TYPE_CHECKING:
    import torch

    from .target import Target
    from .trace import TensorTrace, Trace

FORMAT = "initaudit.snapshot"
FORMAT_VERSION = 1
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
) -> dict[str, Any]:
    """The manifest entry of one traced tensor: identity, hash, stats, recipe, provenance."""
    from . import provenance
    from .recipes import describe_call
    from .trace import module_type_of

    t = tt.tensor
    events = tt.events
    origin, init_ev = _init_of(events)
    random_events = [e for e in events if e.rng]
    entry: dict[str, Any] = {
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
) -> dict[str, Any]:
    """The manifest of a traced build (hashes and statistics computed tensor by tensor).

    ``on_tensor(done, total, nbytes)`` is called after each tensor with the bytes hashed so far.
    """
    from . import provenance

    entries = []
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


def values_path_for(manifest_path: Path) -> Path:
    """The safetensors file that sits beside a manifest."""
    return manifest_path.with_suffix(".safetensors")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    """Write a snapshot's manifest (and values unless ``digest_only``) atomically to ``path``."""
    path = Path(path)
    vpath = values_path_for(path)
    if not force and path.exists():
        raise OutputError(f"{path} exists; pass --force to overwrite it")
    # A values file without its manifest is the leftover of a write interrupted between the
    # two renames (values first, manifest last): no snapshot, so it is replaced.
    manifest = dict(snapshot.manifest)
    if not digest_only:
        if snapshot.values is None:
            raise OutputError("this snapshot holds no values to write")
        tensors = {
            t["name"]: snapshot.values[t["name"]].detach().cpu().contiguous()
            for t in snapshot.tensors
        }
        from .stream import write_safetensors

        digest: list[str] = []
        atomic_write(
            vpath,
            lambda tmp: digest.append(write_safetensors(tensors, tmp, {"format": FORMAT})),
        )
        manifest["values"] = {"file": vpath.name, "sha256": digest[-1]}
    else:
        manifest["values"] = None
    text = manifest_text(manifest)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    snapshot.manifest = manifest
    snapshot.path = path
    return path


# --------------------------------------------------------------------------- reading

_REQUIRED_TENSOR_KEYS = ("name", "shape", "dtype", "hash", "stats", "origin")


def read(path: Path | str) -> Snapshot:
    """Read and validate a snapshot manifest; values are opened lazily and hash-checked."""
    path = Path(path)
    if path.is_dir():
        raise SnapshotError(f"{path} is a folder, not a snapshot file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError(f"snapshot {path} does not exist") from None
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"PK" or raw[:1] == b"\x80":
        raise SnapshotError(
            f"{path} is a pickle/torch.save file, not an initaudit snapshot; "
            "initaudit never unpickles files"
        )
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{path} is not valid JSON ({exc}); is it truncated?") from None
    validate(manifest, str(path))
    vinfo = manifest.get("values")
    vpath = None
    if vinfo:
        vpath = path.parent / Path(vinfo["file"]).name
        if not vpath.exists():
            raise SnapshotError(f"{path}: its values file {vpath} is missing")
    return Snapshot(manifest=manifest, path=path, values_path=vpath)


def validate(manifest: Any, label: str) -> None:
    """Check that a parsed JSON document is a snapshot of a format this version reads."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{label} is JSON but not an initaudit snapshot")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{label} has snapshot format version {version!r}; "
            f"this initaudit reads version {FORMAT_VERSION}",
            hint="upgrade initaudit, or re-freeze the snapshot",
        )
    for key in ("target", "seed", "provenance", "tensors", "rng"):
        if key not in manifest:
            raise SnapshotError(f"{label} is missing the {key!r} field")
    if not isinstance(manifest["tensors"], list):
        raise SnapshotError(f"{label}: 'tensors' is not a list")
    for i, t in enumerate(manifest["tensors"]):
        if not isinstance(t, dict) or any(k not in t for k in _REQUIRED_TENSOR_KEYS):
            raise SnapshotError(f"{label}: tensor entry {i} is incomplete")


def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a whole file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
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
