"""The benchmark models, as importable targets (``benchmarks/models.py:NAME``)."""

from __future__ import annotations

import os

from torch import nn

#: Set to 1 to make the models drift (the last layer's weight is re-initialized differently),
#: as a code change would: same target, same seed, other values.
DRIFT = os.environ.get("INITAUDIT_BENCH_DRIFT") == "1"


def _drift(model: nn.Module) -> nn.Module:
    if DRIFT:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.normal_(last.weight, std=0.01)
    return model


def linear_big(layers: int = 6, width: int = 4096) -> nn.Module:
    """(a) Six Linear(4096, 4096): about 100M parameters in a few large tensors."""
    return _drift(nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)]))


def linear_many(layers: int = 2000, width: int = 8) -> nn.Module:
    """(b) 2000 Linear(8, 8): many small modules, where per-op tracing cost shows."""
    return _drift(nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)]))


def linear_20k() -> nn.Module:
    """20,000 Linear(8, 8): the whole-process freeze target of issue 15 (≤ 1.4× by hand)."""
    return linear_many(layers=20_000)


def gpt2_small() -> nn.Module:
    """(c) A transformers GPT-2 small (GPT2Config() defaults, 124M parameters, tied lm_head)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return _drift(GPT2LMHeadModel(GPT2Config()))


def llama(**overrides: int) -> nn.Module:
    """A transformers Llama with LlamaConfig() defaults (Llama-2-7B shape) unless overridden."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**overrides))


def llama_small() -> nn.Module:
    """A Llama of the same architecture as the 7B defaults, scaled down to fit in memory."""
    return llama(
        hidden_size=1024,
        intermediate_size=2752,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
    )


def llama_half() -> nn.Module:
    """A 0.54 B-parameter Llama (hidden 2048, 8 layers): fits in memory, for the streamed-vs-raw
    digest comparison."""
    return llama(
        hidden_size=2048,
        intermediate_size=5504,
        num_hidden_layers=8,
        num_attention_heads=16,
        num_key_value_heads=16,
    )


def llama70b(num_hidden_layers: int = 80) -> nn.Module:
    """A Llama-2-70B-shaped model (hidden 8192, 80 layers, 64 heads, 8 KV heads, MLP 28672):
    69 B parameters, 276 GB in float32 — only ever streamed (fewer layers for estimates)."""
    return llama(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=64,
        num_key_value_heads=8,
    )


def linear_tensors(tensors: int = 2000, width: int = 8) -> nn.Module:
    """tensors/2 Linear(8, 8) in a Sequential: ``tensors`` small tensors (growth sweep (a))."""
    return _drift(nn.Sequential(*[nn.Linear(width, width) for _ in range(max(1, tensors // 2))]))


def linear_bytes(nbytes: int = 2**20, layers: int = 4) -> nn.Module:
    """``layers`` square Linear layers totalling about ``nbytes`` of fp32 (growth sweep (b))."""
    width = max(1, int((nbytes / (4 * layers)) ** 0.5))
    return _drift(nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)]))
