"""A model with a LazyLinear: its weight only exists (and draws from the RNG) at the first forward.

``initaudit inspect tests/models/lazy.py --example-input 2,3`` runs ``model(torch.zeros(2, 3))``
inside the traced build so the lazy layer materializes.
"""

from torch import nn


class LazyHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.fc(x).relu())
