"""Small real models with the other init bugs ``initaudit inspect`` must catch.

Each class is one bug; none of them is exotic in real code.
"""

import random
import time

import torch
from torch import nn


class PythonRandomBias(nn.Module):
    """A bias drawn from Python's global ``random``: a torch seed alone does not fix it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        nn.init.constant_(self.fc.bias, random.gauss(0.0, 0.1))


class PrivateGenerator(nn.Module):
    """An init drawn from a private torch.Generator: --seed does not change it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        gen = torch.Generator().manual_seed(1234)
        nn.init.normal_(self.fc.weight, std=0.02, generator=gen)


class ClockInit(nn.Module):
    """A scale taken from the clock: different in every process, whatever is seeded."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.full((4,), 1.0 + (time.time_ns() % 1000) / 1e6))


class ConstantMatrix(nn.Module):
    """A weight matrix filled with one constant: symmetry is never broken."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        nn.init.constant_(self.fc.weight, 0.1)


class ZeroMatrix(nn.Module):
    """An all-zero output projection (deliberate in some designs): reported, not failed."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.proj = nn.Linear(8, 8)
        nn.init.zeros_(self.proj.weight)


class NormalizedZeros(nn.Module):
    """Rows normalized to unit norm, one of them all zero: 0/0 gives NaN."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        with torch.no_grad():
            self.fc.weight[0].zero_()
            self.fc.weight.div_(self.fc.weight.norm(dim=1, keepdim=True))


class RescaledRows(nn.Module):
    """kaiming_uniform_ on the whole weight, then half its rows scaled by 10 in place."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)
        nn.init.kaiming_uniform_(self.fc.weight, nonlinearity="relu")
        with torch.no_grad():
            self.fc.weight[:32] *= 10
