"""Write snapshots: default names, the manifest text, and the atomic manifest+values commit."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from initaudit.errors import OutputError, SnapshotError
from initaudit.snapshot.layout import (
    HEX_IN_NAME,
    check_manifest_path,
    folder_lock,
    fsync,
    fsync_folder,
    new_temp,
    stem_of,
    temp_pattern,
    umask,
    values_name,
)
from initaudit.snapshot.read import Snapshot, file_sha256, parse_manifest
from initaudit.snapshot.schema import FORMAT


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


def _referenced_file(path: Path) -> str | None:
    """The values file the manifest now at ``path`` names, if it can be read (else None)."""
    try:
        vinfo = parse_manifest(path, path.parent, path).get("values")
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
    temps = temp_pattern(stem)
    named = re.compile(rf"{re.escape(stem)}\.[0-9a-f]{{{HEX_IN_NAME}}}\.safetensors")
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
    stem = stem_of(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    mode = 0o666 & ~umask()
    with folder_lock(folder, exclusive=True):
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
                tmp = new_temp(folder, stem, "safetensors")
                sha = put_values(tmp)
                fsync(tmp)
                os.chmod(tmp, mode)
                vpath = folder / values_name(path, sha)
                if not os.path.lexists(vpath):
                    created = vpath
                os.replace(tmp, vpath)
                manifest["values"] = {"file": vpath.name, "sha256": sha}
            else:
                manifest["values"] = None
            text = manifest_text(manifest)
            tmp = new_temp(folder, stem, "json")
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
        fsync_folder(folder)
        _clean(folder, stem, keep=vpath.name if vpath else None, legacy=legacy)
    return vpath


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

        def put_values(tmp: Path) -> str:
            from initaudit.snapshot.values import write_safetensors  # imports torch

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









