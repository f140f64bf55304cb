"""The 3-(4-5)-2 tanh network from seed 003, with PyTorch's implicit default init.

Every weight and bias here comes from nn.Linear's hidden ``reset_parameters``:
``kaiming_uniform_(a=math.sqrt(5))`` for weights and ``uniform_(-1/sqrt(fan_in), 1/sqrt(fan_in))``
for biases. ``initaudit explicit examples/mlp.py`` writes that out as code.
"""

import torch as T


class Net(T.nn.Module):
    def __init__(self):
        super().__init__()
        self.hid1 = T.nn.Linear(3, 4)  # 3-(4-5)-2
        self.hid2 = T.nn.Linear(4, 5)
        self.oupt = T.nn.Linear(5, 2)

    def forward(self, x):
        z = T.tanh(self.hid1(x))
        z = T.tanh(self.hid2(z))
        z = self.oupt(z)
        return z
