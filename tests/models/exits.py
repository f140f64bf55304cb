"""Builders that leave instead of returning a model: sys.exit, a BaseException, os._exit."""

import os
import sys

from torch import nn


class Halt(BaseException):
    """Not an Exception: what a framework's own 'stop now' signal may look like."""


def exit_zero():
    sys.exit(0)


def exit_three():
    sys.exit(3)


def custom_base():
    raise Halt("stop the build here")


def os_exit():
    os._exit(0)


def os_exit_in_fresh_process():
    """Build normally, except inside inspect's fresh-process rebuild, where it calls os._exit(0)."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec is not None and main_spec.name.startswith("initaudit.audit"):
        os._exit(0)
    return nn.Linear(3, 2)
