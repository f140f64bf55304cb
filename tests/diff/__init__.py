"""Tests of :mod:`initaudit.diff`."""
