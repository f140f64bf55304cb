"""A model that draws one init from NumPy's global RNG: torch.manual_seed alone does not fix it.

Training scripts commonly seed only torch; then ``head.weight`` differs from run to run.
"""

import numpy as np
import torch
from torch import nn


class NumpyHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(np.random.normal(0, 0.02, (4, 16))))
