"""Init probes across torch releases: modules and init functions whose defaults or kernels
changed at some point (MultiheadAttention without bias, TransformerEncoderLayer's deep copies,
LSTM, BatchNorm, trunc_normal_, orthogonal_, CPU randperm, xavier_normal_).

Measured with ``initaudit matrix tests/models/release_probes.py --torch 2.1.2 --torch 2.13.0
--torch 2.14.1``: from 2.1.2 to 2.13.0 ``pos`` is ``implementation-drift`` (trunc_normal_ went
from ``uniform_ → erfinv_ → mul_ → add_ → clamp_`` to ``normal_``), every other tensor is
identical; 2.13.0 to 2.14.1 is identical.
"""

import torch
from torch import nn


class Probes(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(64, 32)
        self.attn = nn.MultiheadAttention(32, 4, bias=False)
        self.layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64)
        self.lstm = nn.LSTM(32, 16)
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.pos = nn.Parameter(torch.empty(1, 16, 32))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.proj = nn.Linear(32, 64)
        nn.init.orthogonal_(self.proj.weight)
        self.register_buffer("perm", torch.randperm(100))
        self.head = nn.Linear(32, 10)
        nn.init.xavier_normal_(self.head.weight)
