"""Freeze a traced build into a snapshot, and read snapshots back safely.

A snapshot is a JSON manifest (format version, target, seed, provenance, per-tensor hash,
statistics, recipe and events) and, beside it, a safetensors file of the values. Neither format
can run code when read. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import initaudit.snapshot.schema as schema
from initaudit.errors import SnapshotError
from initaudit.snapshot.layout import folder_lock, inside, open_regular, pread
from initaudit.snapshot.schema import FORMAT, FORMAT_VERSION
from initaudit.snapshot.validate import SchemaViolation, got
from initaudit.tensors import dtype_name, tensor_hash

# Reading and diffing snapshots must not pay for importing torch (~1.5 s): torch, the tracer
# and provenance are imported inside the functions that freeze or touch values.
if TYPE_CHECKING:
    import torch



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


# --------------------------------------------------------------------------- writing






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

#: Largest manifest a reader accepts (a bound on memory and time, not a format limit).
MAX_MANIFEST_BYTES = 256 << 20
#: Largest safetensors header a reader accepts (safetensors' own limit).
MAX_VALUES_HEADER_BYTES = 100_000_000
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






































# --------------------------------------------------------------------------- reading










def _loads(text: str) -> Any:
    # The cyclic GC paused while parsing: a parsed document holds no reference cycles, and the
    # collections its millions of new containers would trigger re-scan the whole heap each time
    # (a 100,000-tensor diff spent 8 s of 20 in them, growing faster than the manifest).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    finally:
        if enabled:
            gc.enable()


def parse_manifest(path: Path, folder: Path | None, label: Path) -> Any:
    """The parsed JSON of the manifest at ``path`` (regular file, size-limited)."""
    real = inside(path, folder) if folder is not None else path
    fd, size = open_regular(real, "snapshot", follow=folder is None)
    try:
        if size > MAX_MANIFEST_BYTES:
            raise SnapshotError(
                f"{label} is {size:,} bytes; initaudit reads manifests of up to "
                f"{MAX_MANIFEST_BYTES:,} bytes"
            )
        raw = pread(fd, MAX_MANIFEST_BYTES + 1, 0)
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
        return _loads(raw.decode("utf-8"))
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
    with folder_lock(path.parent, exclusive=False):
        manifest = parse_manifest(path, Path(within) if within is not None else None, path)
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
    fd, size = open_regular(inside(vpath, folder), "values file", follow=False)
    try:
        head = pread(fd, 8, 0)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 0 or n > MAX_VALUES_HEADER_BYTES or 8 + n > size:
            raise SnapshotError(
                f"{vpath}: truncated or corrupted: {size:,} bytes, too short for the "
                "safetensors header it starts with"
            )
        raw = pread(fd, n, 8)
    except OSError as exc:
        raise SnapshotError(f"cannot read {vpath}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        header = _loads(raw.decode("utf-8"))
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
            f"{label} has snapshot format version {got(version)}; "
            f"this initaudit reads version {FORMAT_VERSION}",
            hint="upgrade initaudit, or re-freeze the snapshot",
        )
    try:
        schema.validate_manifest(manifest)
    except SchemaViolation as exc:
        raise SnapshotError(f"{label}: {exc}") from None



def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a whole regular file, read in chunks."""
    h = hashlib.sha256()
    fd, _ = open_regular(Path(path), "file", follow=True)
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



def values_path_for(manifest_path: Path) -> Path | None:
    """The values file the manifest at ``manifest_path`` names (None when it is digest-only)."""
    return read(manifest_path, check_values=False).values_path
