"""A model whose build starts a daemon thread that keeps running torch ops forever."""

import threading

import torch
from torch import nn


def _spin():
    a = torch.ones(64, 64)
    while True:
        a @ a


def build_model():
    threading.Thread(target=_spin, name="model-spinner", daemon=True).start()
    return nn.Linear(4, 3)
