"""Models whose init cannot be made explicit: the tensor and the reason are named."""

from __future__ import annotations

import pytest

from initaudit import codegen
from initaudit.errors import AuditFailure

from .conftest import CORPUS, program_for


def test_unexplainable_models_name_tensor_and_reason():
    _, program = program_for("tests/models/numpy_init.py")
    with pytest.raises(AuditFailure, match=r"head\.weight: .*NumPy"):
        codegen.generate(program)
    _, program = program_for(f"{CORPUS}:PrivateGenerator")
    with pytest.raises(AuditFailure, match=r"fc\.weight: drawn from a private torch\.Generator"):
        codegen.generate(program)
    _, program = program_for("tests/models/forgot_empty.py")
    with pytest.raises(AuditFailure, match=r"scale: never fully written"):
        codegen.generate(program)
