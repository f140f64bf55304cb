"""Audit findings on a traced build: how every tensor is initialized, and whether it reproduces."""

from initaudit.audit.inspect import inspect_target
from initaudit.audit.nondeterminism import rerun_fresh
from initaudit.audit.predict import predict
from initaudit.audit.report import audit

__all__ = ["audit", "inspect_target", "predict", "rerun_fresh"]
