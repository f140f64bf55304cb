"""Small real models exercising every way a tensor can get its initial value."""

import numpy as np
import torch
from torch import nn


class Kitchen(nn.Module):
    """Defaults, user inits, .data writes, thrown-away draws, tied weights, parametrizations."""

    def __init__(self):
        super().__init__()
        self.hid1 = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.gate = nn.Conv2d(3, 4, 3)
        self.gate.bias.data.fill_(-13)
        torch.randn(5)  # a draw thrown away
        self.p = nn.Parameter(torch.randn(2, 2) * 0.02)
        self.mha = nn.MultiheadAttention(8, 2)
        self.enc = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(8, 2, 16), 2, enable_nested_tensor=False
        )
        self.emb = nn.Embedding(10, 4, padding_idx=0)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight  # tied; head's own draw is thrown away
        self.wn = nn.utils.parametrizations.weight_norm(nn.Linear(3, 3))
        self.lstm = nn.LSTM(4, 4)
        self.replaced = nn.Linear(2, 2)
        self.replaced.weight.data = torch.full((2, 2), 0.5)
        self.register_buffer("steps", torch.tensor([1, 2, 3]))
        nn.init.xavier_uniform_(self.hid1.weight)


class Applied(nn.Module):
    """Init applied with model.apply after construction (RNG order differs from names)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Linear(4, 4)
        self.a = nn.Linear(4, 4)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.orthogonal_(m.weight) if m.out_features == 4 and m.in_features == 4 else None
            nn.init.zeros_(m.bias)


class NumpyInit(nn.Module):
    """Draws an init from NumPy's global RNG: a torch seed alone does not fix it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(np.random.randn(3, 3).astype("float32")))
