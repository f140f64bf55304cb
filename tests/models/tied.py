"""A tiny language model whose output projection shares the embedding matrix (tied weights)."""

from torch import nn


class TinyLM(nn.Module):
    def __init__(self, vocab=50, dim=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.embed.weight  # tied; lm_head's own default draw is wasted

    def forward(self, ids):
        return self.lm_head(self.mix(self.embed(ids)))
