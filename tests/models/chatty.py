"""A model that prints while it is imported and built, from Python and at the file-descriptor level."""

import os

from torch import nn

print("chatty: importing")


class Chatty(nn.Module):
    def __init__(self):
        super().__init__()
        print("chatty: building")
        os.write(1, b"chatty: fd-level write\n")
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)
