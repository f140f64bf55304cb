"""Audit findings on a traced build: how every tensor is initialized, and whether it reproduces."""

from initaudit.audit.inspect import audit, inspect_target, predict, rerun_fresh

__all__ = ["audit", "inspect_target", "predict", "rerun_fresh"]
