"""Explicit init code: extract the init program of a build, render it as Python, verify, rewrite."""

from initaudit.codegen.driver import explicit
from initaudit.codegen.program import trace_program
from initaudit.codegen.python import generate
from initaudit.codegen.verification import (
    compare_model,
    defaults_disabled,
    load_initializer,
    verify,
    verify_source,
)

__all__ = [
    "compare_model",
    "defaults_disabled",
    "explicit",
    "generate",
    "load_initializer",
    "trace_program",
    "verify",
    "verify_source",
]
