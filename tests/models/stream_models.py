"""Models for the streaming-equivalence tests: truncated normals, orthogonal init, tied weights."""

from __future__ import annotations

import math

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


# --------------------------------------------------------------------------- computed in the build


class DropPathNet(nn.Module):
    """timm's pattern: drop-path rates from ``linspace(...).tolist()`` and ``.item()``."""

    def __init__(self, depth: int = 4, dim: int = 16, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        per_stage = [x.tolist() for x in torch.linspace(0, drop_path_rate, depth).split([1, 3])]
        self.rates = [float(x.item()) for x in torch.linspace(0, drop_path_rate, depth)]
        assert rates == self.rates == [r for stage in per_stage for r in stage]
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        # A width computed from a rate: the build's shapes depend on the computed values.
        hidden = dim * 2 + round(self.rates[-1] * 40)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            for _ in range(depth)
        )


class RegNetWidths(nn.Module):
    """torchvision/timm RegNet's pattern: widths from ``arange``, ``round``, ``unique``."""

    def __init__(self, depth: int = 6, w0: int = 8, wa: float = 4.5, wm: float = 2.0) -> None:
        super().__init__()
        cont = torch.arange(depth) * wa + w0
        caps = torch.round(torch.log(cont / w0) / math.log(wm))
        widths = (torch.round(torch.divide(w0 * torch.pow(wm, caps), 4)) * 4).int()
        stages, counts = torch.unique(widths, return_counts=True)
        self.widths = stages.tolist()
        layers: list[nn.Module] = []
        cin = 3
        for w, n in zip(self.widths, counts.tolist(), strict=True):
            for _ in range(n):
                layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)]
                cin = w
        self.stem = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 10)


class ForwardInBuild(nn.Module):
    """SSDlite's pattern: an eval forward on zeros during the build sizes the head
    (BatchNorm in eval: its meta kernel returns statistics the CPU kernel leaves empty)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 12, 3, stride=2), nn.BatchNorm2d(12), nn.Hardswish(),
        )  # fmt: skip
        self.features.eval()
        with torch.no_grad():
            out = self.features(torch.zeros(1, 3, 32, 32, device=self.features[0].weight.device))
        self.features.train()
        self.head = nn.Linear(out.shape[1] * out.shape[2] * out.shape[3], 10)
        nn.init.normal_(self.head.weight, std=0.01)


class SmallValuesIntoParameters(nn.Module):
    """Real small values feed parameters: ``copy_`` of an ``arange``, ``mul_`` by a
    ``linspace``, a ``torch.tensor`` drawn into by ``normal_`` between draws on meta tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.empty(4))
        with torch.no_grad():
            self.scale.copy_(torch.arange(4.0))
            self.a.weight.mul_(torch.linspace(0.5, 2.0, 4))
        self.small = nn.Parameter(torch.tensor([0.0, 0.0, 0.0]))
        nn.init.normal_(self.small)  # a draw on a real tensor, between draws on meta ones
        self.b = nn.Linear(4, 4)
        self.register_buffer("index", torch.arange(6).reshape(2, 3).flip(0))


class ReadsADrawnValue(nn.Module):
    """Reads (``.item()``) a value a random op drew into a real tensor: known only in the
    replay, so streaming refuses it, naming the op."""

    def __init__(self) -> None:
        super().__init__()
        noise = torch.tensor([0.0, 0.0]).uniform_()
        self.lin = nn.Linear(4, 4 + int(noise.sum().item() > 5))


def hf_convnext_drop_path() -> nn.Module:
    """transformers ConvNeXt with drop path: rates from ``linspace(...).split(...)`` ``.tolist()``."""
    from transformers import ConvNextConfig, ConvNextModel

    return ConvNextModel(
        ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[2, 2], drop_path_rate=0.2)
    )


class NoMetaKernel(nn.Module):
    """``torch.histogram`` has no meta kernel: on meta it runs the CPU kernel for the shapes,
    and the replay computes its values for real."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        with torch.no_grad():
            hist, edges = torch.histogram(self.lin.weight.flatten(), bins=4)
        self.register_buffer("weight_hist", hist)
        self.register_buffer("edges", edges)


#: A registry of torch init functions taken at import, like transformers' TORCH_INIT_FUNCTIONS.
CAPTURED_INIT = {"trunc_normal_": nn.init.trunc_normal_, "orthogonal_": nn.init.orthogonal_}
captured_trunc_normal_ = nn.init.trunc_normal_


class CapturedInit(nn.Module):
    """Calls trunc_normal_/orthogonal_ through references taken when the module was imported
    (torch returns early from them on meta tensors: a bypassed recorder loses the draws)."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.zeros(1, 4, 8))
        self.rec = nn.Linear(8, 8)
        CAPTURED_INIT["trunc_normal_"](self.cls_token, std=0.02)
        captured_trunc_normal_(self.pos, std=0.02)
        CAPTURED_INIT["orthogonal_"](self.rec.weight)
