"""The driver: target → trace → snapshot, in memory or streamed from a meta-device trace."""

from initaudit.freeze.manifest import build_manifest, tensor_entry
from initaudit.freeze.memory import freeze
from initaudit.freeze.stream import available_bytes, stream_freeze

__all__ = ["available_bytes", "build_manifest", "freeze", "stream_freeze", "tensor_entry"]
