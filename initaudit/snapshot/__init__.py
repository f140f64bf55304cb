"""The snapshot format: one typed schema, safe reading and validation, atomic writing.

Reading and diffing a snapshot never imports torch; only writing values does.
"""

from initaudit.snapshot.layout import atomic_write, check_manifest_path, values_name
from initaudit.snapshot.read import (
    MAX_MANIFEST_BYTES,
    Snapshot,
    check_values_file,
    file_sha256,
    read,
    validate,
    values_path_for,
    verify_values,
)
from initaudit.snapshot.schema import FORMAT, FORMAT_VERSION, Manifest, TensorEntry
from initaudit.snapshot.write import default_filename, default_path, manifest_text, move, write

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "Snapshot",
    "TensorEntry",
    "atomic_write",
    "check_manifest_path",
    "check_values_file",
    "default_filename",
    "default_path",
    "file_sha256",
    "manifest_text",
    "move",
    "read",
    "validate",
    "values_name",
    "values_path_for",
    "verify_values",
    "write",
]
