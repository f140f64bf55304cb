"""The snapshot manifest's one typed schema, checked by the validator every reader uses.

The writer (:func:`initaudit.snapshot.build_manifest`) builds these TypedDicts; the reader
(:func:`initaudit.snapshot.validate`) checks a parsed JSON document against the very same types:
:func:`validate_manifest` walks the document with checkers compiled once from the annotations
below (:mod:`initaudit.snapshot.validate`), so a field is declared in one place. Keys a type does
not declare are accepted (newer writers add optional fields) but still held to the bounds every
value of an untrusted file is held to (:data:`initaudit.snapshot.validate.MAX_STRING` and the
others): strings of at most 65,536 characters, nesting at most 32 deep, integers of at most 64
bits, finite numbers only.

Format version 1. Optional keys (``total=False``) may be absent in snapshots by older writers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from initaudit.snapshot.validate import NonNegative, Pattern, compile_type

FORMAT = "initaudit.snapshot"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- types

#: Any JSON value (held to the bounds only): call arguments, keyword arguments, unknown keys.
JSON = Any
Str = str
Int = int
NonNegInt = Annotated[int, NonNegative()]
#: A finite number, or the string the writer uses for a non-finite statistic.
Stat = float | Literal["nan", "inf", "-inf"]
Hash = Annotated[str, Pattern(r"sha256:[0-9a-f]{64}", "a 'sha256:' and 64 hex digits")]
Digest = Annotated[str, Pattern(r"[0-9a-f]{1,128}", "a hex digest")]
Dtype = Annotated[str, Pattern(r"[a-z][a-z0-9_]{0,31}", "a dtype name such as float32")]


# --------------------------------------------------------------------------- the schema


class Target(TypedDict, total=False):
    """What was built: the spec given, the builder's name, its slug and its keyword arguments."""

    spec: Str
    name: Str
    slug: Str
    kwargs: dict[str, JSON]
    example_input: list[NonNegInt]


class Provenance(TypedDict, total=False):
    """The environment the snapshot was taken in (see :func:`initaudit.provenance.capture`)."""

    torch: Str
    torch_git: Str | None
    python: Str
    platform: Str
    machine: Str
    cpu: Str
    cpu_capability: Str | None
    ATEN_CPU_CAPABILITY: Str | None
    device: Str
    default_dtype: Str
    numpy: Str | None
    initaudit: Str
    deterministic_algorithms: bool
    num_threads: Int
    cuda: Str | None
    gpu: Str | None
    streamed: bool


class Rng(TypedDict, total=False):
    """What the build did to random number generators besides drawing for tensors."""

    torch_after: Digest | None
    drew_from_python_random: bool
    drew_from_numpy: bool
    private_generators: bool


class _EventRequired(TypedDict):
    seq: NonNegInt
    op: Str
    call: Str
    call_id: Int
    origin: Str
    kind: Str
    numel: NonNegInt


class Event(_EventRequired, total=False):
    """One ATen operation that created or wrote a tensor's storage (see ``trace.Event``)."""

    args: dict[str, JSON]
    site: Str | None
    scope: Str | None
    rng: Str | None
    rng_before: Digest | None
    partial: bool


class Init(TypedDict, total=False):
    """The readable call that last set a tensor's whole value."""

    call: Str
    args: dict[str, JSON]
    text: Str


class _StatsRequired(TypedDict):
    numel: NonNegInt


class Stats(_StatsRequired, total=False):
    """Summary statistics of a tensor's values (see :func:`initaudit.snapshot.tensor_stats`)."""

    nan: NonNegInt
    inf: NonNegInt
    zeros: NonNegInt
    mean: Stat
    std: Stat
    min: Stat
    max: Stat


class _TensorRequired(TypedDict):
    name: Str
    shape: list[NonNegInt]
    dtype: Dtype
    hash: Hash
    stats: Stats
    origin: Str


class TensorEntry(_TensorRequired, total=False):
    """One parameter or buffer: identity, hash, statistics, recipe and the events behind it."""

    order: NonNegInt
    kind: Str
    persistent: bool
    module: Str
    device: Str
    site: Str | None
    scope: Str | None
    init: Init | None
    rng_before: Digest | None
    rng: list[Str] | None
    draws: NonNegInt
    aliases: list[Str]
    events: list[Event]


#: A file name beside the manifest: no folder, not ``.`` or ``..``.
FileName = Annotated[
    str, Pattern(r"(?!\.\.?$)[^/\\\x00]{1,255}", "a file name (no folder) beside the manifest")
]


class _ValuesRequired(TypedDict):
    file: FileName


class Values(_ValuesRequired, total=False):
    """Where the values are: the safetensors file beside the manifest, and its sha256."""

    sha256: Hash


class _ManifestRequired(TypedDict):
    format: Literal["initaudit.snapshot"]
    format_version: Literal[1]
    target: Target
    seed: Int
    provenance: Provenance
    rng: Rng
    tensors: list[TensorEntry]


class Manifest(_ManifestRequired, total=False):
    """A snapshot manifest, format version 1."""

    orphan_draws: list[Event]
    values: Values | None


def validate_manifest(document: Any) -> Manifest:
    """Check a parsed JSON document against :class:`Manifest`; raise :class:`SchemaViolation`."""
    compile_type(Manifest).check(document, 0)
    return document  # type: ignore[no-any-return]
