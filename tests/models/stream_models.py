"""Models for the streaming-equivalence tests: truncated normals, orthogonal init, tied weights."""

from __future__ import annotations

import torch
from torch import nn


class TinyViT(nn.Module):
    """A ViT-like module: trunc_normal_ on the position embedding, class token and linears."""

    def __init__(self, dim: int = 32, depth: int = 2, patches: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, dim))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, 4, dim * 2, batch_first=True) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class OrthoRNN(nn.Module):
    """An LSTM with orthogonal recurrent weights (QR in the init) and a tied decoder."""

    def __init__(self, vocab: int = 50, dim: int = 24) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, num_layers=2)
        self.decoder = nn.Linear(dim, vocab)
        self.decoder.weight = self.embed.weight
        for name, p in self.rnn.named_parameters():
            if "weight_hh" in name:
                nn.init.orthogonal_(p)
            elif "weight_ih" in name:
                nn.init.xavier_uniform_(p)
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))


def gpt2_tiny() -> nn.Module:
    """A transformers GPT-2 from a small config (lm_head tied to wte)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16)
    )


def llama_tiny() -> nn.Module:
    """A transformers Llama from a small config (rotary buffers computed in the build)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(
        LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=100,
        )
    )


def bert_tiny() -> nn.Module:
    """A transformers BERT from a small config (buffers made with torch.arange/zeros)."""
    from transformers import BertConfig, BertModel

    return BertModel(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=100,
            max_position_embeddings=32,
        )
    )


class ReadsValues(nn.Module):
    """A build that reads a tensor value (``.item()``): it cannot be traced on meta."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        if float(self.lin.weight.abs().max()) > 10:  # pragma: no cover - never true
            raise AssertionError


def linear_stack() -> nn.Module:
    """Twelve equal Linear layers: replay should hold about one weight at a time."""
    return nn.Sequential(*[nn.Linear(64, 64) for _ in range(12)])
