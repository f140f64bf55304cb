"""A model that allocates a parameter with torch.empty and forgets to initialize it.

``self.scale`` is garbage memory: whatever the allocator hands back, different from run to run.
``reset_parameters`` initializes ``self.weight`` but not ``self.scale``.
"""

import math

import torch
from torch import nn


class ScaledLinear(nn.Module):
    def __init__(self, n_in=8, n_out=16):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.scale = nn.Parameter(torch.empty(n_out))  # never written: the bug
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        return (x @ self.weight.t()) * self.scale
