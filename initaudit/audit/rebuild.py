"""The fresh-process rebuild of ``inspect``: ``python -m initaudit.audit.rebuild CONFIG OUT``.

Only torch is seeded, as in a training script that seeds torch alone; the tensor hashes go to OUT.
"""

from __future__ import annotations

import ast
import json
import os
import random
import sys
import threading
from pathlib import Path

import torch

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]

from initaudit.audit.inspect import audit_builder
from initaudit.errors import InitAuditError
from initaudit.snapshot.layout import atomic_write
from initaudit.target import resolve
from initaudit.tensors import parse_dtype, tensor_hash
from initaudit.trace.tracer import build_context, named_tensors


def _rerun_entry(argv: list[str]) -> int:
    """Run :func:`_rerun_main`; errors become one ``initaudit: error:`` line and exit code 2."""
    try:
        code = _rerun_main(argv)
    except InitAuditError as exc:
        print(f"initaudit: error: {exc}", file=sys.stderr)
        code = 2
    if any(t is not threading.main_thread() and t.is_alive() for t in threading.enumerate()):
        # threads the model left running torch ops would abort at interpreter shutdown
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _rerun_main(argv: list[str]) -> int:
    """Entry point of the fresh-process rebuild: seed torch only, build, write tensor hashes."""
    config, out = json.loads(argv[0]), Path(argv[1])
    target = resolve(config["spec"], ast.literal_eval(config["kwargs"]))
    dtype = parse_dtype(config["dtype"]) if config.get("dtype") else None
    build = audit_builder(target, config.get("example_input"), [])
    # What a training script that seeds only torch gets: Python's and NumPy's global RNGs start
    # from fresh entropy, as they do in a new process.
    random.seed(os.urandom(16))
    if np is not None:
        np.random.seed(int.from_bytes(os.urandom(4), "little"))
    torch.manual_seed(config["seed"])
    with build_context(config["device"], dtype):
        model = build()
    hashes = {name: tensor_hash(t) for name, _, t, _ in named_tensors(model)}
    text = json.dumps(hashes)
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(_rerun_entry(sys.argv[1:]))
