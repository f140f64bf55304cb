"""A tiny real distribution, ``tinyinit``, whose init code changes between its versions.

:func:`install` writes its source tree and installs it with pip (``--target`` for a plain
install, ``-e --prefix`` for an editable one): real dist-info metadata, as a model library has.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOURCE = '''\
"""tinyinit {version}: a model library with its own init helper."""

import math

import torch
from torch import nn

__version__ = "{version}"


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """A truncated normal written in ATen ops (as timm's is): uniform_, erfinv_, …, clamp_."""
    with torch.no_grad():
        tensor.uniform_(-1.0, 1.0)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
    return tensor


class Block(nn.Module):
    """Two linear layers; the library's init_weights sets them."""

    def __init__(self, width=4):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.init_weights()

    def init_weights(self):
        trunc_normal_(self.fc.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std={proj_std})
        nn.init.zeros_(self.proj.bias)
'''

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinyinit"
version = "{version}"

[tool.setuptools]
packages = ["tinyinit"]
'''


def write_project(root: Path, version: str, proj_std: float) -> Path:
    """Write the tinyinit source tree of one version under ``root``; return ``root``."""
    (root / "tinyinit").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(version=version))
    (root / "tinyinit" / "__init__.py").write_text(
        SOURCE.format(version=version, proj_std=proj_std)
    )
    return root


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


def install(src: Path, target: Path) -> Path:
    """``pip install --target``: a plain (non-editable) install; returns the folder to import."""
    _pip("--target", str(target), str(src))
    return target


def install_editable(src: Path, prefix: Path) -> Path:
    """``pip install -e --prefix``: an editable install; returns its site-packages folder."""
    _pip("-e", str(src), "--prefix", str(prefix))
    return next(prefix.glob("lib/python*/site-packages"))
